"""SzCORE event scoring of one recording through ``timescoring``, its reference implementation.

SzCORE (Dan et al., 2024) counts a reference seizure as detected when a hypothesis overlaps it
widened by 30 s before and 60 s after; events closer than 90 s are merged and events longer than
5 minutes are split, in both annotations. All of that happens inside
``timescoring.scoring.EventScoring``; this module only converts the events and its counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from timescoring.annotations import Annotation
from timescoring.scoring import EventScoring

from eeg_assets.lib.scoring.counts import EventCounts
from eeg_assets.lib.scoring.events import Interval

#: ``EventScoring`` works at 10 Hz whatever the input rate; giving it 10 Hz loses nothing more.
ANNOTATION_FS = 10

#: The SzCORE parameters (docs/tusz.md, "Evaluation conventions"), under timescoring's own names.
SZCORE_PARAMETERS = {
    "toleranceStart": 30.0,            # seconds before a reference event still counted a hit
    "toleranceEnd": 60.0,              # seconds after it
    "minOverlap": 0.0,                 # any overlap
    "maxEventDuration": 5 * 60.0,      # longer events are split
    "minDurationBetweenEvents": 90.0,  # closer events are merged
}


def score_szcore(ref: Sequence[Interval], hyp: Sequence[Interval],
                 duration_s: float) -> EventCounts:
    """SzCORE event scoring of one recording.

    Parameters
    ----------
    ref, hyp : sequence of (start_s, stop_s)
        Seizure events in seconds, sorted and disjoint (see ``merge_events``).
    duration_s : float
        The recording's duration in seconds; events past it are cut at the end.

    Returns
    -------
    EventCounts
        ``targets``: reference events after SzCORE's merging and splitting; ``hits``: those
        detected; ``false_alarms``: hypothesis events that overlap no widened detected
        reference event.
    """
    samples = round(duration_s * ANNOTATION_FS)
    scoring = EventScoring(Annotation(list(ref), ANNOTATION_FS, samples),
                           Annotation(list(hyp), ANNOTATION_FS, samples),
                           EventScoring.Parameters(**SZCORE_PARAMETERS))
    targets, hits = int(scoring.refTrue), int(scoring.tp)
    return EventCounts(targets=targets, hits=hits, misses=targets - hits,
                       false_alarms=int(scoring.fp), duration_s=float(duration_s))
