"""Build a speaker-labelled corpus of real recorded human speech from Debian data packages.

TTS voices alone teach a separator TTS voices (the default trained on them alone separates
real recorded people at about 2 dB SI-SNRi). Several Debian data packages ship real people's
recorded speech: ``cocktail corpus real --out DIR`` (or :func:`.build.build_real_corpus`) fetches
them (``scripts/fetch-speech-packages.sh``: ``apt-get download`` + ``dpkg -x``, nothing is
installed), extracts the speech and writes the same layout as ``cocktail corpus build``::

    DIR/<split>/<speaker>/<utterance_id>.flac     mono PCM_16 FLAC at --sample-rate
    DIR/manifest.csv                              MANIFEST_COLUMNS, with source and licence
    DIR/corpus.json                               parameters, counts, package versions

Sources (:data:`.build.SOURCES`; a speaker is one recorded voice, named ``<source>-<label>``):

=========== ========================= ====================================== ============
source      package                   speaker label                          licence
=========== ========================= ====================================== ============
tuxpaint    tuxpaint-stamps-default   language of ``*_desc_<lang>.ogg``      GPL-2
klettres    klettres-data             language folder (letters, syllables)   GPL-2+
hedgewars   hedgewars-data            voice pack folder                      GFDL-1.3
festvox-ru  festvox-ru                the one studio speaker (msu_ru_nsh)    BSD-like
nexuiz      nexuiz-data               player-model voice (in data.pk3)       GPL-2+
megaglest   megaglest-data            unit voice (:data:`.plain_files.MEGAGLEST_VOICES`)  CC-BY-SA-3.0
gcin        gcin-voice                reader, by file name (3.ogg, 5.ogg)    GPL-3/CC-BY-3
queen       flight-of-the-amazon-     voice cluster (names + embeddings;     freeware
            queen                     in queen.1c; 8 kHz corpora only)       (its licence)
warzone     warzone2100-data          folder, by a measured table (in        GPL-2+
                                      base.wz, 11 kHz; 8 kHz corpora only)
codec2      codec2-examples           callsign/name in the file name, by a   LGPL-2.1
                                      table (8 kHz; 8 kHz corpora only)
0ad         0ad-data                  unit voice: language x man/woman (in   CC-BY-SA-3.0
                                      public.zip; :data:`.archives.ZEROAD_VOICES`)
sky         beneath-a-steel-sky       voice cluster (scripts' speakers +     freeware
                                      embeddings; in sky.dsk; 8 kHz only)    (its licence)
=========== ========================= ====================================== ============

The packages label recordings by language or pack, not by person: one label may hold more
than one person (harmless: they never meet in a mixture) and one person may stand behind
two labels (then they could meet, and a split could hold them twice); nothing in the
packages says so for the ones used here, but packs can share recordings (hedgewars': see
:func:`.plain_files.find_hedgewars`). Packages reserved for an independent test of the
project (:data:`.packages.RESERVED_PACKAGES`) are refused, whatever is asked.

A source recorded at a low rate (``Source.native_rate``: queen's, sky's and warzone's game
speech is 11025 Hz, codec2's samples 8000 Hz)
feeds only corpora at or under that rate: a build at a higher ``sample_rate`` skips it, with
a log line, before fetching it. Where a package has no speaker labels at all (queen and
sky), the reader labels clips by voice (:mod:`cocktailparty.data.voices`: Resemblyzer
embeddings, clustering), checked against what the clips' names (queen) or the game's scripts
(sky) tell, and leaves out what it cannot label confidently.

Processing, per clip: decode, mix to mono, resample (soxr) to the corpus rate, trim the
edges below -40 dB re the loudest 10 ms frame, and drop the clip if it is shorter than
0.25 s or **band-limited**: its bandwidth (:func:`cocktailparty.data.speech_audio.bandwidth_hz`) under
``min_bandwidth`` times the Nyquist frequency, so that an old 8 kHz recording resampled to
16 kHz never teaches a 16 kHz model that the top band is empty. The packages' clips are
short (a word, a letter, a one-line description: 0.5-3 s), so each speaker's clips, in a
seeded order, are joined into utterances of about ``utterance_seconds`` with pauses of
0.15-0.4 s between them (each clip first brought to the same RMS level), and each utterance
is normalised like the TTS corpus (RMS -25 dBFS, peaks under -0.3 dBFS). A speaker keeps at
most ``max_minutes`` of speech (festvox-ru alone has 100 minutes of one man); speakers with
under ``min_seconds`` (a source may set a lower floor: megaglest's unit voices hold 6-40 s
each) are dropped. Splits are disjoint by speaker, sources interleaved so each split gets
several. Speakers are split in groups (``Source.split_group``): the first four sources are
one group, each later source a group of its own, split by the same seeded rule, so adding a
source leaves every earlier speaker in its split (and its utterances unchanged).

``cocktail corpus real-noise --out DIR`` (:func:`.noise.build_real_noise`) takes the non-speech
sounds of two of these packages instead (tuxpaint stamp effects; hedgewars effects and
music) as a noise folder for ``data.noise``, laid out like ``cocktail corpus noise``.

Modules: :mod:`.packages` (fetching the packages, what a source is, decoding a clip),
:mod:`.plain_files` (sources whose packages hold audio files in folders),
:mod:`.archives` (sources packed in a game's archive: nexuiz's data.pk3, warzone's base.wz,
0ad's public.zip, queen's queen.1c, sky's sky.dsk; :mod:`.rnc` unpacks the latter),
:mod:`.build` (the source table and the corpus build: joining, splitting, writing) and
:mod:`.noise` (the real-noise folder).
"""
