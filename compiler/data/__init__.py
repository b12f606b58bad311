"""Offline data the compiler hands on: text corpora and digits for evaluation (datasets,
mnist), and the tuning and calibration data passes read through their PassContext (tuning).
Nothing here downloads anything.
"""
