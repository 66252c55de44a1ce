"""Heads: lightweight (pooled features + LightGBM/linear) and full (PyTorch sequence models)."""


def heads_to_train(offered: tuple[str, ...], configured: list[str], multitask: bool = True) -> list[str]:
    """The heads the workflow trains for a task that offers ``offered``: the configured ones
    (``train.heads``) it offers, in their order, then ``full_multitask`` when ``multitask`` asks
    for it beside ``full`` (``train.multitask``, viewer_valence). Naming ``full_multitask`` in
    ``configured`` trains it without ``full`` and whatever ``multitask`` says."""
    heads = [h for h in dict.fromkeys(configured) if h in offered]
    if multitask and "full_multitask" in offered and "full" in heads and "full_multitask" not in heads:
        heads.append("full_multitask")
    return heads
