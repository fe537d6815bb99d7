"""The worker's garbage collector, set once the App has started (``omnirelay serve`` only).

Python's cyclic collector runs its youngest pass every 700 net container allocations. A request leaves next to
no cyclic garbage (reference counting frees it all; measured: 196 unreachable objects after 3,000 requests,
all from connections closed at shutdown), but the pass still walks every young object that is alive, and at
c=32 that is the in-flight requests' state: about one pass per 40-140 requests, and every tenth pass a
second-generation one (bench/CHANGES.md section 18). So the first threshold is raised, and what the start-up
built (config, routes, compiled schemas, modules: ~35,000 objects) is frozen, moved out of the collector's
sight for good, so that the rare full pass does not walk it either.
"""

from __future__ import annotations

import gc


def settle_after_startup(gen0_threshold: int) -> None:
    """Freeze what start-up left alive; with ``gen0_threshold`` > 0, make it the first generation's threshold
    (the older generations keep theirs)."""
    gc.collect()  # start-up's own cyclic garbage goes now rather than being frozen with the rest
    gc.freeze()
    if gen0_threshold > 0:
        _gen0, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)
