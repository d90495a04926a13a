"""Acoustic features for a manifest, computed once per (audio content, preset) and cached on disk.

A *preset* (``FeaturePreset``) fixes every parameter of the computation; ``paper-mfcc`` follows
Rajapakshe et al. (2023): resample to 32,750 Hz, keep the first 8 s (zero-padded), 128 MFCC with
n_fft 2048 / hop 512 -> 128 x 512 frames, max-pool time by 4 -> ``(1, 128, 128)``.

Cache layout (per node; ``default_cache_dir()``)::

    <cache_dir>/
        content-index.json                      # (path, size, mtime, ctime, inode) -> content hash
        <preset.name>-<preset.fingerprint>/
            preset.json                         # the preset, for humans
            <hh>/<content hash>.npy             # float32 (1, F, T); hh = first two hex digits

The key of a feature file is the blake2b hash of the audio file's bytes plus the preset's
fingerprint, so editing an audio file or any preset parameter recomputes, renaming or copying an
audio file does not, and identical audio under two paths is computed once. Every file is written
through ``trainers.atomic_io``: a killed run leaves no partial ``.npy``.

``content-index.json`` only saves rehashing unchanged audio (see ``trainers.features.cache``).

Self-supervised encoders (WavLM, HuBERT, wav2vec 2.0): ``ssl_presets`` (``SSLPreset``: which
encoder, layers, pooling; its fingerprint includes the weights' sha256) and ``ssl_encoder``
(finding and checking the weights, ``SSLFeatureExtractor``). Their files are float16
``(L, D, t)`` holding only the clip's frames; ``load_features`` pads them to ``(L, D, T)``.

Modules: ``presets`` (what is computed), ``signal`` (the computation), ``cache`` (where it is
stored, content hashes), ``extraction`` (``extract_features``), ``node`` (``extract_features_once``:
one process per node computes, under a file lock, the others wait), ``loading`` (``load_features``).
"""

from trainers.features.cache import default_cache_dir, feature_path
from trainers.features.extraction import FailedUtterance, FeatureExtractionSummary, extract_features
from trainers.features.loading import FeaturesNotFoundError, load_features
from trainers.features.node import extract_features_once
from trainers.features.presets import (
    FEATURE_ALGORITHM_VERSION,
    PRESETS,
    AnyPreset,
    FeaturePreset,
    get_preset,
    parse_preset,
)
from trainers.features.signal import FeatureExtractor
from trainers.features.ssl_encoder import (
    SSLFeatureExtractor,
    WeightsError,
    check_weights,
    default_weights_path,
    load_encoder,
    resolve_preset,
)
from trainers.features.ssl_presets import SSL_BUNDLES, EncoderSpec, SSLPreset

__all__ = [
    "FEATURE_ALGORITHM_VERSION",
    "PRESETS",
    "SSL_BUNDLES",
    "AnyPreset",
    "EncoderSpec",
    "SSLFeatureExtractor",
    "SSLPreset",
    "WeightsError",
    "check_weights",
    "default_weights_path",
    "load_encoder",
    "parse_preset",
    "resolve_preset",
    "FailedUtterance",
    "FeatureExtractionSummary",
    "FeatureExtractor",
    "FeaturePreset",
    "FeaturesNotFoundError",
    "default_cache_dir",
    "extract_features",
    "extract_features_once",
    "feature_path",
    "get_preset",
    "load_features",
]
