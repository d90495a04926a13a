"""Speaker-independent folds with validation speakers carved from the training side.

A fold assigns every utterance of the protocol to ``train``, ``valid`` or ``test``. Test
speakers never appear in train or valid of the same fold (``check_folds`` proves it and every
fold table is checked before it is written). Class selection and merges (``exc -> hap``) are
applied here, because they are part of the experiment's protocol, not of the corpus.

Schemes:
- ``loso``: leave one session out; fold k tests on every speaker of the k-th session.
- ``speaker-pairs``: the paper's five folds; fold k tests on the male speaker of session k and
  the female speaker of session k+1 (cyclic), i.e. {Ses01M, Ses02F}, {Ses02M, Ses03F}, ...,
  {Ses05M, Ses01F} on IEMOCAP. Needs one F and one M speaker per session.
- ``given``: the folds of shared split files (EmoBox, s3prl, SpeechBrain), built by
  ``trainers.given_folds.given_folds``, not here.
- ``cross-corpus``: train (and validate) on the speakers of some corpora of a manifest of several,
  test on another: fold k tests on every speaker of ``test_corpora[k-1]``; built by
  ``trainers.cross_corpus.cross_corpus_folds``, not here. Each corpus maps its raw labels to the
  protocol's classes with its own merges (``corpus_merges``).

Speaker independence is checked, never assumed: column ``speaker_check`` says per fold whether
every speaker has one role (``independent``), some speaker has two (``overlap``: a test speaker
also trains or validates, as in published single-fold splits of some corpora), or some speaker
is unknown (``unknown``, ``trainers.corpora.speakers``). ``make_folds`` only makes independent
folds; ``check_folds`` recomputes the flag and refuses a table whose column says otherwise, and
``require_speaker_independence`` refuses flagged folds to a search unless the user opts in.

Every speaker of a fold has exactly one role (docs/selection.md, "Four roles per fold"):

- ``test``: evaluated once at the end, reported, never used to choose anything;
- ``valid``: chooses the evaluation epoch and every choice between trials;
- ``train``: trains the network. The DARTS search splits these speakers *by speaker* into
  weight speakers and architecture (alpha) speakers (column ``search_role``: ``weights`` or
  ``alphas``); the from-scratch evaluation trains on all of them.

Validation speakers are drawn, per fold, from that fold's non-test speakers with a generator
seeded by (seed, fold), alternating genders when more than one is asked for; the alpha speakers
then from the remaining training speakers, seeded by (seed, fold, 1), again alternating genders,
``arch_share`` of them (rounded, at least one, leaving at least one for the weights). A fold with
a single training speaker gives it to the weights and has no alpha speakers (a search that needs
them then says so).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trainers.atomic_io import read_parquet_metadata, write_parquet_atomically
from trainers.corpora.speakers import is_unknown_speaker

SCHEMES = ("loso", "speaker-pairs", "given", "cross-corpus")
MADE_SCHEMES = SCHEMES[:2]  # the schemes make_folds builds from a manifest's sessions
SPLITS = ("train", "valid", "test")
SEARCH_ROLES = ("weights", "alphas")  # of training speakers in the DARTS search (null on valid/test rows)
METADATA_KEY = "sernas.folds"
FOLD_COLUMNS = ("utt_id", "fold", "split", "label", "speaker", "session", "search_role")
# Per fold (the same on each of its rows): are its speakers' roles disjoint? Derived from the
# columns above (``speaker_check``), so written for SQL and readers, recomputed when read.
SPEAKER_CHECK_COLUMN = "speaker_check"
SPEAKER_CHECKS = ("independent", "overlap", "unknown")


@dataclass(frozen=True)
class FoldProtocol:
    """Everything that decides which utterance lands where; stored inside the fold table."""

    scheme: str
    classes: tuple[str, ...] | None = None
    merges: Mapping[str, str] = field(default_factory=dict)
    improvised_only: bool = False
    valid_speakers: int = 2
    arch_share: float = 0.5
    seed: int = 0
    # cross-corpus only: fold k tests on corpus test_corpora[k-1] (the manifest's dataset column)
    # and trains on train_corpora (None: every other corpus of corpus_merges); corpus_merges maps
    # each corpus of the experiment to its own merges (raw label -> class), used instead of merges.
    test_corpora: tuple[str, ...] = ()
    train_corpora: tuple[str, ...] | None = None
    corpus_merges: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, but got {self.scheme!r}.")
        self._check_corpora()
        if self.valid_speakers < 1:
            raise ValueError(f"valid_speakers must be >= 1, but got {self.valid_speakers}.")
        if not 0.0 < self.arch_share < 1.0:
            raise ValueError(f"arch_share must be between 0 and 1 (exclusive), but got {self.arch_share}.")
        for source, target in self.merges.items():
            if self.classes is not None and target not in self.classes:
                raise ValueError(
                    f"merge {source}={target}: target {target!r} is not among classes {', '.join(self.classes)}."
                )
        object.__setattr__(self, "merges", dict(self.merges))
        object.__setattr__(self, "corpus_merges", {c: dict(m) for c, m in self.corpus_merges.items()})
        object.__setattr__(self, "test_corpora", tuple(self.test_corpora))
        if self.train_corpora is not None:
            object.__setattr__(self, "train_corpora", tuple(self.train_corpora))

    def _check_corpora(self) -> None:
        given = [name for name in ("test_corpora", "train_corpora", "corpus_merges") if getattr(self, name)]
        if self.scheme != "cross-corpus":
            if given:
                raise ValueError(
                    f"{', '.join(given)} belong to scheme cross-corpus, but the scheme is {self.scheme!r}."
                )
            return
        if self.classes is None:
            raise ValueError("scheme cross-corpus needs classes: the classes every corpus maps its labels to.")
        if self.merges:
            raise ValueError("scheme cross-corpus takes merges per corpus (corpus_merges), not merges.")
        corpora = list(self.corpus_merges)
        if len(corpora) < 2:
            raise ValueError(f"scheme cross-corpus needs at least 2 corpora in corpus_merges, but got {corpora}.")
        for name, kind in ((self.test_corpora, "test_corpora"), (self.train_corpora or (), "train_corpora")):
            unknown = [c for c in name if c not in corpora]
            if unknown:
                raise ValueError(f"{kind}: unknown corpus {', '.join(unknown)}; the corpora are {', '.join(corpora)}.")
        if not self.test_corpora:
            raise ValueError("scheme cross-corpus needs test_corpora: the corpus each fold tests on.")
        if len(set(self.test_corpora)) != len(self.test_corpora):
            raise ValueError(f"test_corpora must name each corpus once, but got {list(self.test_corpora)}.")
        for corpus, merges in self.corpus_merges.items():
            for source, target in merges.items():
                if target not in self.classes:
                    raise ValueError(
                        f"corpus {corpus}: merge {source}={target}: target {target!r} is not among classes "
                        f"{', '.join(self.classes)}."
                    )
        for corpus in self.test_corpora:
            if not self.training_corpora(corpus):
                raise ValueError(f"the fold testing on {corpus} has no training corpus (train_corpora).")

    def training_corpora(self, test_corpus: str) -> tuple[str, ...]:
        """cross-corpus: the corpora that train and validate the fold testing on ``test_corpus``."""
        return training_corpora(test_corpus, corpora=tuple(self.corpus_merges), train_corpora=self.train_corpora)


def training_corpora(
    test_corpus: str, *, corpora: Sequence[str], train_corpora: Sequence[str] | None
) -> tuple[str, ...]:
    """The corpora that train (and validate) the cross-corpus fold testing on ``test_corpus``:
    ``train_corpora`` (None: every one of ``corpora``) without the test corpus."""
    pool = train_corpora if train_corpora is not None else corpora
    return tuple(corpus for corpus in pool if corpus != test_corpus)


def parse_merges(items: Sequence[str]) -> dict[str, str]:
    """``["exc=hap", "fru=ang"]`` -> ``{"exc": "hap", "fru": "ang"}``; errors name the item."""
    merges = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"merge {item!r} must look like SOURCE=TARGET, e.g. exc=hap.")
        merges[source.strip()] = target.strip()
    return merges


def apply_protocol_labels(manifest: pd.DataFrame, protocol: FoldProtocol) -> pd.DataFrame:
    """Rows of the protocol with their protocol label (after merges, restricted to classes)."""
    frame = manifest.copy()
    if protocol.improvised_only:
        if frame["improvised"].isna().any():
            raise ValueError(
                "improvised_only needs an improvised flag on every row, but the manifest has "
                "rows without one (add an 'improvised' column to the CSV corpus)."
            )
        frame = frame[frame["improvised"].astype(bool)]
    if protocol.corpus_merges:  # cross-corpus: each corpus maps its own raw labels
        unknown = sorted(set(frame["dataset"].astype(str)) - set(protocol.corpus_merges))
        if unknown:
            raise ValueError(
                f"the manifest holds corpus(es) {', '.join(unknown)} that the protocol does not name (its corpora: "
                f"{', '.join(protocol.corpus_merges)})."
            )
        labels = frame["label"].astype(str)
        for corpus, merges in protocol.corpus_merges.items():
            rows = frame["dataset"].astype(str) == corpus
            labels = labels.mask(rows, labels[rows].replace(merges))
        frame["label"] = labels
    else:
        frame["label"] = frame["label"].astype(str).replace(protocol.merges)
    if protocol.classes is not None:
        absent = [name for name in protocol.classes if name not in set(frame["label"])]
        if absent:
            raise ValueError(
                f"class(es) {', '.join(absent)} have no utterances in this manifest "
                f"(labels present: {', '.join(sorted(set(frame['label'])))})."
            )
        frame = frame[frame["label"].isin(protocol.classes)]
    if frame.empty:
        raise ValueError("no utterances left after applying the protocol (classes, merges, improvised_only).")
    return frame


def protocol_classes(folds: pd.DataFrame, *, classes: Sequence[str] | None = None) -> tuple[str, ...]:
    """The class list of a fold table: ``classes`` in their given order (the config's, which the
    table's labels were restricted to), else every label of the table, sorted.

    One rule, so that searching, cross-evaluating and exporting number the classes alike."""
    return tuple(classes) if classes is not None else tuple(sorted(folds["label"].unique()))


def _test_speaker_sets(frame: pd.DataFrame, scheme: str) -> list[set[str]]:
    sessions = sorted(frame["session"].unique())
    if len(sessions) < 2:
        raise ValueError(f"{scheme} folds need at least 2 sessions, but the data has {len(sessions)}.")
    speakers_of = {s: set(frame.loc[frame["session"] == s, "speaker"]) for s in sessions}
    if scheme == "loso":
        return [speakers_of[s] for s in sessions]
    by_gender: dict[int, dict[str, str]] = {}
    for session in sessions:
        rows = frame.loc[frame["session"] == session, ["speaker", "gender"]].drop_duplicates()
        genders = dict(zip(rows["gender"], rows["speaker"]))
        if len(rows) != 2 or set(genders) != {"F", "M"}:
            raise ValueError(
                f"speaker-pairs folds need exactly one F and one M speaker in each session, but "
                f"session {session} has {sorted(rows['speaker'])} with genders {sorted(rows['gender'])}."
            )
        by_gender[session] = genders
    return [{by_gender[s]["M"], by_gender[sessions[(i + 1) % len(sessions)]]["F"]} for i, s in enumerate(sessions)]


def _pick_speakers(candidates: pd.DataFrame, *, count: int, rng: np.random.Generator) -> set[str]:
    """``count`` speakers of ``candidates`` (columns speaker, gender) in a seeded order, taking
    the genders in turn, so that two picks are one F and one M where the corpus allows."""
    order = candidates.iloc[rng.permutation(len(candidates))]
    picked: list[str] = []
    genders = list(dict.fromkeys(order["gender"]))
    while len(picked) < count:
        for gender in genders:
            left = [s for s in order.loc[order["gender"] == gender, "speaker"] if s not in picked]
            if left and len(picked) < count:
                picked.append(left[0])
    return set(picked)


def _alpha_speaker_count(n_train: int, share: float) -> int:
    """Alpha speakers among ``n_train`` training speakers: ``share`` of them, rounded, at least
    one and leaving at least one for the weights (none when there is a single speaker)."""
    if n_train < 2:
        return 0
    return min(max(round(share * n_train), 1), n_train - 1)


def make_folds(manifest: pd.DataFrame, *, protocol: FoldProtocol, folds: Sequence[int] | None = None) -> pd.DataFrame:
    """Return the fold table (``FOLD_COLUMNS``), folds numbered from 1, checked for leakage."""
    if protocol.scheme not in MADE_SCHEMES:
        where = (
            "trainers.cross_corpus.cross_corpus_folds (an experiment's data.sources)"
            if protocol.scheme == "cross-corpus"
            else "split files (trainers.given_folds.given_folds, sernas folds --from)"
        )
        raise ValueError(
            f"make_folds builds {' and '.join(MADE_SCHEMES)} folds; {protocol.scheme!r} folds come from {where}."
        )
    frame = apply_protocol_labels(manifest, protocol)
    test_sets = _test_speaker_sets(frame, protocol.scheme)
    wanted = list(range(1, len(test_sets) + 1)) if folds is None else list(folds)
    for fold in wanted:
        if not 1 <= fold <= len(test_sets):
            raise ValueError(f"fold {fold} does not exist; the {protocol.scheme} scheme has folds 1..{len(test_sets)}.")
    speakers = frame[["speaker", "gender"]].drop_duplicates().sort_values("speaker").reset_index(drop=True)
    tables = []
    for fold in wanted:
        test = test_sets[fold - 1]
        missing = test - set(frame["speaker"])
        if missing:
            raise ValueError(f"fold {fold}: test speaker(s) {sorted(missing)} have no utterances.")
        outside_test = speakers[~speakers["speaker"].isin(test)]
        valid = draw_valid_speakers(outside_test, protocol=protocol, fold=fold, where="outside the test set")
        training = outside_test[~outside_test["speaker"].isin(valid)]
        alphas = draw_alpha_speakers(training, protocol=protocol, fold=fold)
        split = np.where(frame["speaker"].isin(test), "test", np.where(frame["speaker"].isin(valid), "valid", "train"))
        role = np.where(split != "train", None, np.where(frame["speaker"].isin(alphas), "alphas", "weights"))
        tables.append(
            pd.DataFrame(
                {
                    "utt_id": frame["utt_id"].to_numpy(),
                    "fold": fold,
                    "split": split,
                    "label": frame["label"].to_numpy(),
                    "speaker": frame["speaker"].to_numpy(),
                    "session": frame["session"].to_numpy(),
                    "search_role": role,
                }
            )
        )
    table = typed_fold_table(pd.concat(tables, ignore_index=True))
    check_folds(table)
    return table


def typed_fold_table(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the fold table's column types and its ``speaker_check`` column computed."""
    table = table.astype(
        {
            "utt_id": "string",
            "split": "string",
            "label": "string",
            "speaker": "string",
            "fold": "int64",
            "session": "int64",
            "search_role": "string",
        }
    )
    return with_speaker_check(table)


def draw_valid_speakers(candidates: pd.DataFrame, *, protocol: FoldProtocol, fold: int, where: str) -> set[str]:
    """``protocol.valid_speakers`` validation speakers of fold ``fold`` from ``candidates`` (columns
    speaker, gender; sorted by speaker), seeded by (seed, fold), genders in turn; at least one
    candidate must be left to train (``where`` says what the candidates are, for the error)."""
    if protocol.valid_speakers >= len(candidates):
        raise ValueError(
            f"valid_speakers={protocol.valid_speakers} leaves no training speaker in fold {fold} (only "
            f"{len(candidates)} speakers remain {where})."
        )
    return _pick_speakers(candidates, count=protocol.valid_speakers, rng=np.random.default_rng([protocol.seed, fold]))


def draw_alpha_speakers(training: pd.DataFrame, *, protocol: FoldProtocol, fold: int) -> set[str]:
    """The alpha (architecture) speakers of fold ``fold`` among its ``training`` speakers (columns
    speaker, gender; sorted by speaker): ``arch_share`` of them, seeded by (seed, fold, 1)."""
    return _pick_speakers(
        training,
        count=_alpha_speaker_count(len(training), protocol.arch_share),
        rng=np.random.default_rng([protocol.seed, fold, 1]),
    )


def speaker_roles(rows: pd.DataFrame) -> pd.Series:
    """Each row's role: ``test``, ``valid``, or its search role (``weights``/``alphas``) on train."""
    role = rows["split"].astype("string")
    if "search_role" in rows.columns:
        role = role.mask(role == "train", "train:" + rows["search_role"].astype("string").fillna("weights"))
    return role


def speaker_check(rows: pd.DataFrame) -> str:
    """The speaker check of one fold's rows: ``unknown`` when a speaker is unknown, ``overlap``
    when a speaker has two roles (test, valid, weights, alphas), else ``independent``."""
    if rows["speaker"].map(is_unknown_speaker).any():
        return "unknown"
    roles_per_speaker = speaker_roles(rows).groupby(rows["speaker"]).nunique()
    return "overlap" if (roles_per_speaker > 1).any() else "independent"


def with_speaker_check(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its ``speaker_check`` column (re)computed, fold by fold."""
    checks = {fold: speaker_check(rows) for fold, rows in table.groupby("fold")}
    table = table.copy()
    table[SPEAKER_CHECK_COLUMN] = table["fold"].map(checks).astype("string")
    return table


def flagged_folds(table: pd.DataFrame) -> dict[int, str]:
    """``{fold: check}`` of the folds that are not speaker-independent (computed, never read)."""
    checks = {int(fold): speaker_check(rows) for fold, rows in table.groupby("fold")}
    return {fold: check for fold, check in checks.items() if check != "independent"}


def require_speaker_independence(table: pd.DataFrame, *, opt_in: str) -> None:
    """Raise ValueError naming each fold whose test speakers also train or validate, or whose
    speakers are unknown: a search on it would report test UA on speakers it learnt from (or
    cannot say). ``opt_in`` is how the user says to search them anyway (a config key or flag)."""
    flagged = flagged_folds(table)
    if not flagged:
        return
    described = []
    for fold, check in flagged.items():
        rows = table[table["fold"] == fold]
        if check == "unknown":
            count = rows.loc[rows["speaker"].map(is_unknown_speaker), "utt_id"].nunique()
            described.append(f"fold {fold}: speakers unknown for {count} utterance(s)")
            continue
        roles = speaker_roles(rows).groupby(rows["speaker"]).nunique()
        shared = sorted(str(s) for s in roles[roles > 1].index)
        tested = set(rows.loc[rows["split"] == "test", "speaker"].astype(str))
        what = "test speaker(s)" if tested & set(shared) else "speaker(s) with two roles"
        described.append(
            f"fold {fold}: {what} {', '.join(shared[:4])}{' ...' if len(shared) > 4 else ''} also train or validate"
        )
    raise ValueError(
        f"{len(flagged)} fold(s) are not speaker-independent ({'; '.join(described)}): their test UA would be measured "
        "on speakers the search learnt from, or nobody can say. Give every utterance its speaker (sernas manifest "
        f"--speakers map.csv), leave those folds out (folds.use), or search them anyway with {opt_in}; the fold "
        f"table's {SPEAKER_CHECK_COLUMN} column keeps the flag."
    )


def check_folds(table: pd.DataFrame) -> None:
    """Raise if a fold's ``speaker_check`` column disagrees with its rows, or (in a fold checked
    ``independent``, or in any fold of a table without the column) if a speaker has two roles (a
    test speaker in train or valid, a validation speaker among the training speakers, a weight
    speaker among the alpha speakers); and in every fold if a role is given to a row outside
    training or if a split is empty."""
    for fold, rows in table.groupby("fold"):
        computed = speaker_check(rows)
        declared = sorted(set(rows[SPEAKER_CHECK_COLUMN].astype(str))) if SPEAKER_CHECK_COLUMN in rows.columns else None
        checked = declared in (None, ["independent"])  # then every speaker must have one role
        test_speakers = set(rows.loc[rows["split"] == "test", "speaker"])
        leaked = test_speakers & set(rows.loc[rows["split"] != "test", "speaker"])
        if leaked and checked:
            raise RuntimeError(f"fold {fold}: test speaker(s) {sorted(leaked)} also in train/valid.")
        if "search_role" in rows.columns:
            stray = rows["search_role"].notna() & (rows["split"] != "train")
            if stray.any():
                raise RuntimeError(
                    f"fold {fold}: utterance {rows.loc[stray, 'utt_id'].iloc[0]} has a search role "
                    "but is not a training utterance."
                )
            unknown = set(rows["search_role"].dropna()) - set(SEARCH_ROLES)
            if unknown:
                raise ValueError(f"fold {fold}: search_role must be one of {SEARCH_ROLES}, but got {sorted(unknown)}.")
        roles_per_speaker = speaker_roles(rows).groupby(rows["speaker"]).nunique()
        shared = sorted(roles_per_speaker[roles_per_speaker > 1].index)
        if shared and checked:
            raise RuntimeError(
                f"fold {fold}: speaker(s) {shared} have more than one role (test, valid, weights, alphas)."
            )
        if declared is not None and declared != [computed]:
            raise ValueError(
                f"fold {fold}: {SPEAKER_CHECK_COLUMN} says {', '.join(declared)} but its speakers make it "
                f"{computed}; the column is computed (sernas folds), never set by hand."
            )
        absent = [split for split in SPLITS if not (rows["split"] == split).any()]
        if absent:
            raise ValueError(f"fold {fold} has no {', '.join(absent)} utterances.")


def write_folds(
    table: pd.DataFrame,
    out: str | Path,
    *,
    protocol: FoldProtocol,
    manifest_path: str | Path,
    source: Mapping[str, str] | None = None,
) -> Path:
    """Write the checked fold table atomically, its protocol (and, for given folds, ``source``:
    the split files' format and folder) in its metadata."""
    check_folds(table)
    metadata = {
        **asdict(protocol),
        "classes": list(protocol.classes) if protocol.classes else None,
        "manifest": str(Path(manifest_path).resolve()),
    }
    if source is not None:
        metadata["source"] = dict(source)
    return write_parquet_atomically(table, out, metadata={METADATA_KEY: json.dumps(metadata)})


def read_folds(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """The fold table and the protocol it was made with."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fold table {path} does not exist; create it with `sernas folds`.")
    table = pd.read_parquet(path)
    missing = [column for column in FOLD_COLUMNS if column not in table.columns]
    if missing == ["search_role"]:
        raise ValueError(
            f"fold table {path} predates speaker roles (no search_role column: which training speakers train the "
            "weights and which the alphas); make it again with `sernas folds` (`sernas search` remakes its own)."
        )
    if missing:
        raise ValueError(f"fold table {path} lacks column(s) {', '.join(missing)}; is it a sernas fold table?")
    if SPEAKER_CHECK_COLUMN in table.columns:
        try:
            check_folds(table)  # the stored flag must be what the speakers say
        except (ValueError, RuntimeError) as error:
            raise ValueError(f"fold table {path}: {error}") from None
    else:
        table = with_speaker_check(table)  # written before the column existed: computed from the rows
    raw = read_parquet_metadata(path).get(METADATA_KEY)
    return table, (json.loads(raw) if raw else {})


def fold_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Utterances and speakers per fold x split, for the table the CLI prints."""
    grouped = table.groupby(["fold", "split"])
    counts = grouped.size().unstack("split", fill_value=0).reindex(columns=list(SPLITS), fill_value=0)
    speakers = grouped["speaker"].apply(lambda s: ",".join(sorted(set(s)))).unstack("split")
    counts["valid speakers"] = speakers.get("valid")
    counts["test speakers"] = speakers.get("test")
    alphas = table[table["search_role"] == "alphas"].groupby("fold")["speaker"]
    counts["alpha speakers"] = alphas.apply(lambda s: ",".join(sorted(set(s)))).reindex(counts.index)
    counts["speaker check"] = pd.Series({fold: speaker_check(rows) for fold, rows in table.groupby("fold")})
    return counts


def make_inner_folds(
    outer: pd.DataFrame,
    *,
    n_inner: int,
    arch_share: float = 0.5,
    seed: int = 0,
    genders: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """``n_inner`` inner speaker folds built from ONE outer fold's non-test speakers.

    ``outer`` is the rows of one outer fold (``FOLD_COLUMNS``). Its non-test speakers (the
    outer validation and training speakers together) are dealt, in an order seeded by (seed,
    fold, 2) that puts one gender after the other (``genders``: speaker -> gender, from the
    manifest), round-robin into ``n_inner`` groups, so each gender spreads evenly over them; inner fold ``i`` validates on group ``i`` and trains on the others,
    which it splits by speaker into weight and alpha speakers (``arch_share``, seeded by (seed,
    fold, i, 1)). The outer test speakers stay ``test`` in every inner fold: scored once per
    evaluated network, read by nothing that chooses. Returns the rows of every inner fold
    (``FOLD_COLUMNS`` plus ``inner_fold``, numbered from 1), each checked like a fold table.
    """
    folds = outer["fold"].unique()
    if len(folds) != 1:
        raise ValueError(f"make_inner_folds takes the rows of one outer fold, but got folds {sorted(folds)}.")
    fold = int(folds[0])
    if n_inner < 2:
        raise ValueError(f"folds.inner must be >= 2, but got {n_inner}.")
    names = sorted(str(s) for s in outer.loc[outer["split"] != "test", "speaker"].unique())
    if n_inner > len(names) - 1:
        raise ValueError(
            f"folds.inner = {n_inner} needs at least {n_inner + 1} non-test speakers in fold {fold} (each inner fold "
            f"validates on its own group and trains on the others), but the fold has {len(names)}."
        )
    speakers = pd.DataFrame({"speaker": names, "gender": [str((genders or {}).get(s, "?")) for s in names]})
    dealt = _dealing_order(speakers, rng=np.random.default_rng([seed, fold, 2]))
    tables = []
    for inner in range(1, n_inner + 1):
        valid = set(dealt[inner - 1 :: n_inner])
        training = speakers[~speakers["speaker"].isin(valid)]
        alphas = _pick_speakers(
            training,
            count=_alpha_speaker_count(len(training), arch_share),
            rng=np.random.default_rng([seed, fold, inner, 1]),
        )
        speaker = outer["speaker"].astype(str)
        split = np.where(outer["split"] == "test", "test", np.where(speaker.isin(valid), "valid", "train"))
        role = np.where(split != "train", None, np.where(speaker.isin(alphas), "alphas", "weights"))
        rows = outer.assign(split=split, search_role=role, inner_fold=inner)
        if SPEAKER_CHECK_COLUMN in rows.columns:  # the inner fold's own check (its roles are its own)
            rows[SPEAKER_CHECK_COLUMN] = speaker_check(rows)
        tables.append(rows)
    table = pd.concat(tables, ignore_index=True).astype(
        {"split": "string", "search_role": "string", "inner_fold": "int64"}
    )
    for _, rows in table.groupby("inner_fold"):
        check_folds(rows)
    return table


def _dealing_order(speakers: pd.DataFrame, *, rng: np.random.Generator) -> list[str]:
    """``speakers`` (columns speaker, gender) in a seeded order, one gender after the other, so
    that dealing them round-robin into groups spreads every gender over the groups evenly."""
    order = speakers.iloc[rng.permutation(len(speakers))]
    return [str(s) for gender in sorted(set(order["gender"])) for s in order.loc[order["gender"] == gender, "speaker"]]
