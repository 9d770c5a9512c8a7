"""PMMRec, a pure multi-modality transferable sequential recommender, as a RecBole plugin."""

from recbole_pmmrec import compat

compat.apply()

from recbole_pmmrec.config import Config  # noqa: E402
from recbole_pmmrec.quick_start import load_data_and_model, run_recbole  # noqa: E402

__all__ = ["Config", "run_recbole", "load_data_and_model"]
__version__ = "0.1.0"
