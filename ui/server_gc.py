"""The server's garbage-collection policy: no full collection after every page run.

Streamlit 1.67 runs `gc.collect(2)` after every script run (`runner.postScriptGC`, on by default). With
torch, numpy, pandas and plotly loaded the server holds ~320 000 tracked objects, and that collection
took ~0.15-0.3 s of CPU each time, holding the GIL: on Draw, where every stroke reruns the canvas
fragment, it was ~70 % of the server's CPU (py-spy), and with six users drawing while two jobs trained
it made answers wait for seconds. Python's own generational collection still runs; what is alive
after the first page run (modules, caches) is frozen out of it, so its rare full collections stay cheap.
"""

from __future__ import annotations

import gc
import logging

_LOG = logging.getLogger(__name__)
_configured = False


def configure() -> None:
    """Once per server process: switch off the per-run full collection and freeze the start-up heap."""
    global _configured
    if _configured:
        return
    _configured = True
    try:
        from streamlit import config

        if config.get_option("runner.postScriptGC"):  # e.g. started from another folder, without our config
            config.set_option("runner.postScriptGC", False)
    except Exception as exc:  # another Streamlit layout: its default stays
        _LOG.warning("runner.postScriptGC left as it is: %s", exc)
    gc.collect()  # once, so that no garbage is frozen with the rest
    gc.freeze()
