"""Compound virtual models: ``think:<model>``, ``heavy:<model>`` and ``deepsearch:<model>`` over any routable model.

Each mode is an ``EngineProvider`` (so both inbound protocols, streaming or not, work unchanged) that calls the
base model through an injected ``ModelCaller`` (normal routing, per-call pricing). The engines report the exact
sum of every upstream call's usage and its cost; the call pipeline settles that cost.

``pipeline_caller.install`` registers it all at start: the engines as providers of the virtual channels, the modes
with the route table (``RouteTable.register_virtual``), the tool loop with the call pipeline
(``CallPipeline.intercept``); nothing below this package imports it. This module is all that install loads up
front. The engines' modules, and the server-side tools they use (aiohttp among them), load when a request first
needs one: see ``pipeline_caller.ENGINES`` and ``pipeline_caller.tool_loop_route``.
"""

from omnirelay.compound.modes import MODES, PROVIDER_NAME, SERVER_TOOLS, TOOLS_MODE, split_virtual

__all__ = ["MODES", "PROVIDER_NAME", "SERVER_TOOLS", "TOOLS_MODE", "split_virtual"]
