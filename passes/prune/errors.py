"""The error every pruning stage raises when a model or keep set is outside what it handles."""


class PruneError(ValueError):
    """The model cannot be pruned as asked (untraceable, an op without a rule, or a keep set
    the slicer cannot realise exactly)."""
