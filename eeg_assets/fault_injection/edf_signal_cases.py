"""Fault cases of the EDF signals: missing, duplicate, flat, implausible and mixed-rate channels."""

from __future__ import annotations

from eeg_assets.lib.cache.ledger import BUILT
from eeg_assets.fault_injection.catalogue import Placed, edf_fault
from eeg_assets.fault_injection.edf_surgery import set_signal_field, zero_signal


@edf_fault("missing EEG channels: C3",
           description="C3 relabelled 'EEG X3-REF' (a required channel other than Fz/Pz missing)")
def edf_missing_channel(p: Placed) -> None:
    set_signal_field(p.edf, "EEG C3-REF", "label", "EEG X3-REF")


@edf_fault(outcome=BUILT, details=(("reconstructed", "FZ=mean(F3,F4); PZ=mean(P3,P4)"),),
           description="Fz and Pz relabelled away: rebuilt from F3/F4 and P3/P4, not rejected")
def edf_missing_fz_pz(p: Placed) -> None:
    set_signal_field(p.edf, "EEG FZ-REF", "label", "EEG X1-REF")
    set_signal_field(p.edf, "EEG PZ-REF", "label", "EEG X2-REF")


@edf_fault("duplicate EEG channels: F3", description="F4 relabelled 'EEG F3-REF' (two F3 channels)")
def edf_duplicate_channel(p: Placed) -> None:
    set_signal_field(p.edf, "EEG F4-REF", "label", "EEG F3-REF")


@edf_fault("duplicate EEG channels: T3",
           description="the extra signal relabelled 'EEG T7-REF', a synonym of T3 already present")
def edf_duplicate_synonym(p: Placed) -> None:
    set_signal_field(p.edf, "EEG EKG1-REF", "label", "EEG T7-REF")


@edf_fault("flat EEG channel(s) with zero variance: O1",
           description="every O1 sample set to 0 (a disconnected electrode)")
def edf_flat_channel(p: Placed) -> None:
    zero_signal(p.edf, "EEG O1-REF")


@edf_fault("implausible amplitude, standard deviation above 10000 uV on C4",
           description="C4's physical range set to -9999999..99999999 uV (values ~1e6 uV)")
def edf_extreme_amplitude(p: Placed) -> None:
    set_signal_field(p.edf, "EEG C4-REF", "physical_min", "-9999999")
    set_signal_field(p.edf, "EEG C4-REF", "physical_max", "99999999")


@edf_fault("EEG channels have different sampling rates", "EEG O2-REF 128 Hz",
           description="O2 at 128 Hz among 256 Hz channels (samples per record 256 -> 128, the "
                       "extra signal 256 -> 384 so the record size is unchanged)")
def edf_mixed_rates(p: Placed) -> None:
    set_signal_field(p.edf, "EEG O2-REF", "samples_per_record", "128")
    set_signal_field(p.edf, "EEG EKG1-REF", "samples_per_record", "384")
