from services.moderation.model.public_sets import *  # noqa: F401,F403  (moved; kept until bench/spam.py is updated)
from services.moderation.model.public_sets import DATASETS, READERS, available, cap, load  # noqa: F401
