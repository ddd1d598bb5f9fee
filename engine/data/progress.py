"""Words for the data preparation's progress: one line from a `data` event or status.json's `data` field.

Light module; `tunebench train` (foreground), `tunebench status` and the workbench's Monitor show these lines.
"""
from __future__ import annotations


def describe(e: dict) -> str:
    """preparing (rows done of the total, rows/s, invalid so far), ready (from the cache or prepared), or a note."""
    phase = e.get("phase")
    if phase == "prepare":
        total = f" / {e['rows_total']:,}" if e.get("rows_total") else ""
        return (f"preparing {e.get('pass', 'train')} data: {e.get('rows_done', 0):,}{total} rows, "
                f"{e.get('rows_per_s') or 0:,.0f} rows/s, {e.get('invalid', 0):,} invalid")
    if phase == "ready":
        how = "from the cache" if e.get("cached") else "prepared"
        return f"data ready: {e.get('rows', 0):,} rows {how} in {e.get('seconds', 0):.1f} s"
    if phase == "score":
        total = f" / {e['rows_total']:,}" if e.get("rows_total") else ""
        return (f"scoring rows (data.order easy_first): {e.get('rows_done', 0):,}{total} rows, "
                f"{e.get('rows_per_s') or 0:,.0f} rows/s")
    if phase == "scored":
        how = "from the cache" if e.get("cached") else "scored"
        return (f"rows ordered easy first: {e.get('rows', 0):,} base-model losses {how} in {e.get('seconds', 0):.1f} s "
                f"(median {e.get('median')})")
    return f"data: {e.get('note', phase)}"
