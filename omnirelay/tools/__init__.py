"""Server-side tools the gateway runs itself: search backends, a guarded ``fetch``, and a sandboxed ``python``."""
