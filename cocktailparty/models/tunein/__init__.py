"""Tune-In (Wang, Lam, Su & Yu, AAAI 2021) as a package, one part of the paper per module:

- :mod:`.galr`: the GALR blocks every space is built of, with dual attention (Eq. 3-4);
- :mod:`.model`: the model, its three spaces, cross attention (Eq. 1-2) and steering
  (Eq. 3-4), its modes and the interfaces it implements;
- :mod:`.objective`: Tune-InCE, its regularizer and the joint loss (Eq. 5-7), Tune-ID;
- :mod:`.enrollment`: enrollment recordings to speaker memory, and one enrolled talker kept;
- :mod:`.plot`: the cross-attention maps of Eq. 1 over a spectrogram.

Importing the package registers the ``tunein`` architecture.
"""

from .enrollment import EnrolledTalker, SpeakerMemory
from .model import MODES, TuneIn, TuneInConfig, TuneInOutput

__all__ = ["MODES", "EnrolledTalker", "SpeakerMemory", "TuneIn", "TuneInConfig", "TuneInOutput"]
