"""Dataset-specific preparation: official releases → mesm dataset folders (manifest + clips)."""

from mesm.data.prepare.common import PrepareReport
from mesm.data.prepare.iemocap import prepare_iemocap
from mesm.data.prepare.mosei import prepare_mosei
from mesm.data.prepare.released import prepare_released

__all__ = ["PrepareReport", "prepare_iemocap", "prepare_mosei", "prepare_released"]
