"""A search's run folder: what is written as trials end, and what is read back.

* :mod:`.folder`: :class:`RunFolder`, which owns every path of a run folder
  and every read and write;
* :mod:`.records`: the trial record, and the Pareto set of records;
* :mod:`.storage`: where a run folder lives (local, or a ``pyarrow.fs`` URI);
* :mod:`.callback`: the Ray Tune callbacks of a search (:func:`search_callbacks`:
  :class:`RunLog` and :class:`SearchSummary`);
* :mod:`.metrics`: the metrics it exports;
* :mod:`.digest`: the keyed digest of the Tune state ``--resume`` unpickles;
* :mod:`.report`: the report (figures and tables).
"""

from .callback import RunLog, SearchSummary, search_callbacks
from .folder import RunFolder
from .records import (
    completed_points,
    ended_status,
    objective_point,
    pareto_records,
    trial_record,
)
from .report import (
    baselines_table,
    best_under,
    markdown_table,
    reference_point_of,
    relevance_table,
    top_dimensions,
    write_report,
)

__all__ = [
    "RunFolder",
    "RunLog",
    "SearchSummary",
    "baselines_table",
    "best_under",
    "completed_points",
    "ended_status",
    "markdown_table",
    "objective_point",
    "pareto_records",
    "reference_point_of",
    "relevance_table",
    "search_callbacks",
    "top_dimensions",
    "trial_record",
    "write_report",
]
