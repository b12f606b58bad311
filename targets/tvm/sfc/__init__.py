"""SFC layers on the `tvm` target: the graph rewrite that replaces an exported SFCConv2d by
ember ops (rewrite), their import into Relax (relax_import) and the generated TIR kernels
(kernels).
"""
