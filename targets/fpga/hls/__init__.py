"""The HLS-style C++ project of an integer design: the project files (project), one function
per layer (layers, decoder) and constant products as shifts and additions (expr).
"""
