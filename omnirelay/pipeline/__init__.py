"""The one call pipeline below the relay and the compound engines: plan a request's models, call a channel
(retrying on another while nothing reached the caller), and settle what the call used and cost.

``gate`` is the interface of the gate every request passes (implemented by ``omnirelay.state``), ``context`` the
per-request context object, ``calls`` the pipeline itself (``CallPipeline``, ``UpstreamStream``).
"""
