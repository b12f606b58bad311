"""The HLS-style C++ project of an integer design: the project files (project), one function
per layer (layers, decoder), constant products as shifts and additions (expr), and the C++
text the writers share: identifiers, arrays, signatures, folding pragmas (cpp).
"""
