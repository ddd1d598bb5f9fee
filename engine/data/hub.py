"""Hub dataset ids (`owner/name` with data.subset and data.split): loaded through `datasets`, failing fast offline.

Heavy only when called (imports `datasets`). Without a network, `datasets` can spend minutes in connection
retries; a 3-second reachability probe runs first so an offline machine gets a clear message at once.
"""
from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlparse

from engine.data.errors import DataError, Row

_TRUE = ("1", "true", "yes", "on")


def offline_forced() -> bool:
    return any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """Can a TCP connection to the hub endpoint open within `timeout`? DNS included (run in a thread)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    ok: list[bool] = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)  # getaddrinfo has no timeout of its own
    return bool(ok)


def load_hub(spec: str, split: str = "train", subset: str | None = None) -> list[Row]:
    """Every row of `split` of a hub dataset; cached copies load offline when HF_HUB_OFFLINE=1 is set."""
    return list(iter_hub(spec, split, subset, streaming=False))


def iter_hub(spec: str, split: str = "train", subset: str | None = None, streaming: bool = True):
    """The rows of `split` of a hub dataset one at a time: streamed from the hub where it allows (nothing is
    downloaded whole), else (offline, from the local cache) read from the cached copy."""
    what = f"{spec}" + (f" (subset {subset})" if subset else "") + f" split {split}"
    if not offline_forced() and not hub_reachable():
        raise DataError(f"{spec}: looks like a hub dataset id, but the hub cannot be reached from here (no network). "
                        "Download it where there is a network (datasets.load_dataset(...).save_to_disk(DIR) or a "
                        "JSONL export) and point data.train at the file or directory; set HF_HUB_OFFLINE=1 to use "
                        "a copy already in the local cache.")
    try:
        import datasets

        ds = datasets.load_dataset(spec, subset, split=split, streaming=streaming and not offline_forced())
        for i, r in enumerate(ds):
            yield Row(dict(r), f"{spec} ({split})[{i}]")
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds; each becomes one line for the user
        msg = " ".join(str(e).split())[:300]
        hint = (" (HF_HUB_OFFLINE is set: only datasets already in the local cache load; unset it or give a "
                "local file)") if offline_forced() else ""
        if "split" in msg.lower() and "unknown" in msg.lower():
            hint = "; set data.split to one of the dataset's splits"
        if "config" in msg.lower() and "name" in msg.lower():
            hint = "; set data.subset to one of the dataset's configurations"
        raise DataError(f"{spec}: cannot load {what} from the hub: {type(e).__name__}: {msg}{hint}") from None
