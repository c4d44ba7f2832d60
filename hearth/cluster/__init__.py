"""Scale-out on a Ray cluster (docs/CLUSTER.md).

``config`` (hearth.toml ``[cluster]``), ``serve`` (the Serve application: ingress and one
deployment per model; ``hearth serve --cluster``), ``ingress`` (forwarding, retries, error
events), ``deployment`` (a replica: the single-machine app in process), ``ray_router`` (Ray
Serve's request router calling ``routing``), ``routing`` (pure replica choice),
``distribution`` (models into each node's own store), ``status`` (``hearth cluster status``).
Nothing here imports Ray at module level except ``ray_router``: the pure parts work without it.
"""
