"""The static HTML report of ``wilddet report`` (builder, data, and its hand-written assets)."""
