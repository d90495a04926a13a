"""Run every benchmark, one process each, and write results/*.json plus results/SUMMARY.md.

    python benchmarks/run_all.py [--only NAME ...] [--skip NAME ...] [--results benchmarks/results]

Sized to finish in about 15 minutes on a 2-core CPU (the pruning benchmark, about twice its old
size since issue 24's nested selection, is not yet timed in it; ``supernet_paper``, the SuperNet step at
the paper's batch 32, takes about 10 more and runs only when named with ``--only``). Each benchmark runs in its own Python
process (so peak-memory readings and Ray sessions do not leak into the next one) with the
arguments listed in ``BENCHMARKS``; a failing one is reported and the others still run. The
summary is rebuilt from every JSON file present, so a partial rerun (``--only``) keeps the
other rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from trainers.atomic_io import write_text_atomically

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# name -> (script, arguments); the order puts quick ones first
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "manifest": ("bench_manifest.py", ["--utterances", "1000", "--repeats", "2"]),
    "baseline_ua": ("baseline_ua.py", []),
    "features": ("bench_features.py", []),
    # SSL encoders on the CPU: a tiny random one and WavLM Base+'s architecture (random weights), ~20 s.
    "ssl_features": ("bench_ssl_features.py", []),
    "leaderboard": ("bench_leaderboard.py", ["--rows", "1000000", "--files", "10000", "--repeats", "2"]),
    "predictions": ("bench_predictions.py", ["--utterances", "1000", "--repeats", "20"]),
    "orchestration": ("bench_orchestration.py", ["--trials", "50"]),
    "driver_memory": ("bench_driver_memory.py", ["--trials", "500"]),
    # Trials per outer fold (5 outer folds x 4 inner folds each): 30 trials, 1080 trial-epochs.
    "pruning": ("bench_pruning.py", ["--trials", "6"]),
    # The paper's setting (4 layers, 4 nodes, 8 channels, 1 x 128 x 128) at batch 8, where the
    # reference fits in memory next to everything else; batch 32 is supernet_paper.
    # One forward+backward and the evaluation network's step at batch 8 and 16, a profile at 8.
    "supernet": ("bench_supernet.py", ["--batch", "8", "--fb-batches", "8", "16"]),
    # One search step with the fixed LSTM vs a searched sequence cell (issue 28), about a minute.
    "sequence_step": ("bench_sequence_step.py", []),
    # Not in the default run (about 10 more minutes): batch 32, where the reference's predicted
    # peak exceeds this machine's memory, plus a same-batch comparison at 16.
    "supernet_paper": ("bench_supernet.py", ["--batch", "32", "--fb-batches", "32", "--profile-batch", "0"]),
    # Not in the default run (tens of minutes): the training recipe's evidence, LOSO 5 folds x 3
    # seeds, searched vs hand-made vs logistic regression, plus an ablation.
    "recipe": ("bench_recipe.py", []),
    # Not in the default run (about 40 minutes): every search method vs K = 8 random cells, the hand-made
    # network and the per-speaker logistic regression, LOSO 5 folds x 1 seed, the method chosen on validation.
    "search_value": ("bench_search_value.py", []),
}
LONG = ("supernet_paper", "recipe", "search_value")
DEFAULT = [name for name in BENCHMARKS if name not in LONG]


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
    return str(value)


def _met(flag: object) -> str:
    return "met" if flag is True else "NOT met" if flag is False else "n/a"


def _manifest(r: dict) -> list[str]:
    return [
        f"| manifest of {r.get('utterances')} synthetic utterances (best of runs) | "
        f"{_fmt(r.get('manifest_seconds_best'))} s ({_fmt(r.get('utterances_per_second'))} utt/s) | — | — |"
    ]


def _baseline(r: dict) -> list[str]:
    return [
        f"| trivial baseline UA (LOSO logistic regression on mean MFCC) | UA {_fmt(r.get('ua', r.get('mean_ua')))} "
        f"(chance 0.25) | — | — |"
    ]


def _features(r: dict) -> list[str]:
    lib = r.get("librosa") or {}
    if lib.get("skipped", True):
        return [f"| `paper-mfcc` features vs librosa | skipped: {lib.get('reason', 'librosa not installed')} | | |"]
    cold, warm = lib.get("ours_cold_over_librosa"), lib.get("ours_warm_over_librosa")
    cold_speed = (r.get("extract") or {}).get("cold_w1", {}).get("utterances_per_s")
    return [
        f"| `paper-mfcc` features, {r.get('utterances')} utterances, cold: ours {_fmt(cold_speed)} utt/s vs the "
        f"librosa pipeline {_fmt(lib.get('timing', {}).get('utterances_per_s'))} utt/s | {_fmt(cold)}x | >= 5x | "
        f"{_met(None if cold is None else cold >= 5)} |",
        f"| `paper-mfcc` features, warm cache vs the librosa pipeline (which has no cache) | {_fmt(warm)}x | "
        f">= 100x | {_met(None if warm is None else warm >= 100)} |",
    ]


def _ssl_features(r: dict) -> list[str]:
    encoders = r.get("encoders", {})
    speeds = ", ".join(
        f"{name} ({_fmt(e.get('parameters') / 1e6, 2)} M parameters) {_fmt(e.get('audio_seconds_per_second'))}"
        for name, e in encoders.items()
    )
    sizes = ", ".join(
        f"{name} {_fmt(e.get('cache_mb_per_hour'))} MB (formula {_fmt(e.get('formula_mb_per_hour'))})"
        for name, e in encoders.items()
    )
    disk = r.get("iemocap", {})
    large = disk.get("wavlm-large", {})
    worst = r.get("iemocap_default_max_disk_gb_all")
    return [
        f"| SSL features on the CPU ({r.get('threads')} thread, random weights): seconds of audio per second | "
        f"{speeds} | measure | — |",
        f"| SSL feature cache per hour of audio (float16, measured on disk) | {sizes} | measure | — |",
        f"| SSL cache for all of IEMOCAP (12.4 h; 7 h in four classes) with the default presets: wavlm-large "
        f"{_fmt(large.get('disk_gb_all'))} GB ({_fmt(large.get('disk_gb_four_classes'))} GB), the largest default "
        f"{_fmt(worst)} GB | {_fmt(worst)} GB | < 10 GB | {_met(None if worst is None else worst < 10)} |",
    ]


def _leaderboard(r: dict) -> list[str]:
    return [
        f"| leaderboard default query, {r.get('rows'):,} rows in {r.get('files'):,} part files: compacted "
        f"(once {_fmt(r.get('compact_seconds'))} s) / part files warm / cold | "
        f"{_fmt(r.get('duckdb_compacted_seconds'))} s / {_fmt(r.get('duckdb_warm_seconds'))} s / "
        f"{_fmt(r.get('duckdb_cold_seconds'))} s | < 3 s | {_met(r.get('goal_met'))} |",
        f"| same query in pandas over the part files, vs DuckDB compacted | {_fmt(r.get('pandas_seconds'))} s "
        f"({_fmt(r.get('pandas_over_duckdb_compacted'))}x slower) | ratio | — |",
    ]


def _predictions(r: dict) -> list[str]:
    return [
        f"| per-utterance predictions ({r.get('classes')} classes): size and write time per 1,000 utterances, "
        f"and the write vs one fold row's | {_fmt(r.get('bytes_per_1000_utterances', 0) / 1024)} KiB, "
        f"{_fmt(r.get('write_ms_per_1000_utterances'))} ms ({_fmt(r.get('predictions_over_fold_row_write'))}x a fold "
        "row's write) | small | — |"
    ]


def _orchestration(r: dict) -> list[str]:
    overhead = r.get("overhead_per_trial_seconds")
    return [
        f"| Tune per-trial overhead vs a plain loop ({r.get('trials')} trials, with checkpoints, row, status) | "
        f"{_fmt(overhead)} s ({_fmt(r.get('tune_seconds'))} s vs {_fmt(r.get('plain_loop_seconds'))} s) | < 0.2 s | "
        f"{_met(None if overhead is None else overhead < 0.2)} |"
    ]


def _driver_memory(r: dict) -> list[str]:
    at = r.get("driver_rss_mib_when_finished", {})
    marks = ", ".join(f"{v} MiB at {k}" for k, v in at.items())
    return [
        f"| driver RSS as {r.get('trials')} trials finish ({marks}) | {_fmt(r.get('growth_kib_per_finished_trial'))} "
        f"KiB per finished trial | measure | — |"
    ]


def _pruning(r: dict) -> list[str]:
    arms = r.get("arms", {})
    base = arms.get("none", {})
    nested = "nested_mean_test_ua" in base  # since issue 24: per outer fold's study, inner folds
    what = (
        "nested test UA estimate (per outer fold the validation-chosen trial)"
        if nested
        else ("mean test UA of the validation-chosen trial")
    )
    trials = (
        f"{r.get('trials')} trials, {r.get('trials_per_outer_fold')} per outer fold"
        if nested
        else f"{r.get('trials')} trials"
    )

    def ua(arm: dict) -> str:
        return _fmt(arm.get("nested_mean_test_ua", arm.get("chosen_mean_test_ua", arm.get("best_mean_ua"))))

    rows = []
    for name in ("wilcoxon", "median"):
        arm = arms.get(name, {})
        rows.append(
            f"| pruning, {name} vs none ({trials}): trial-epochs {arm.get('trial_epochs')} vs "
            f"{base.get('trial_epochs')}, {what} {ua(arm)} vs {ua(base)} | "
            f"{arm.get('trial_epochs_saved', 0):.1%} fewer trial-epochs | >= 40 % fewer, UA within 0.01 | "
            f"{_met(arm.get('goal_met'))} |"
        )
    return rows


def _supernet(r: dict, *, equivalence: bool = True) -> list[str]:
    setting = r.get("setting", {})
    shape = (
        f"{setting.get('layers')} layers, {setting.get('nodes')} nodes, {setting.get('channels')} channels, "
        f"1x{setting.get('height')}x{setting.get('width')}"
    )
    rows = []
    goal = r.get("goal") or {}
    fast, small = goal.get("samples_per_s_ratio_at_least", 3.0), goal.get("peak_rss_ratio_at_most", 0.5)
    for c in r.get("comparisons", []):
        if c.get("reference_measured"):
            speed, memory = c.get("samples_per_s_ratio"), c.get("peak_rss_ratio")
            met = None if speed is None or memory is None else speed >= fast and memory <= small
            rows.append(
                f"| SuperNet search step, {c['order']} order, batch {c['batch']} ({shape}): ours / DARTS "
                f"reference | {_fmt(speed)}x samples/s, {_fmt(memory)}x peak RSS | >= {fast:g}x, <= {small:g}x | "
                f"{_met(met)} (speed {_met(None if speed is None else speed >= fast)}, memory "
                f"{_met(None if memory is None else memory <= small)}) |"
            )
        else:
            rows.append(
                f"| SuperNet search step, {c['order']} order, batch {c['batch']} ({shape}): reference not "
                f"run ({c.get('reference_note')}) | ours {_fmt(c.get('peak_rss_ratio_vs_predicted_reference'))}x "
                f"the reference's predicted peak RSS | <= {small:g}x | "
                f"{_met(None if c.get('peak_rss_ratio_vs_predicted_reference') is None else c['peak_rss_ratio_vs_predicted_reference'] <= small)} (memory) |"
            )
    for c in (r.get("forward_backward") or {}).get("comparisons", []):
        speed, memory = c.get("samples_per_s_ratio"), c.get("peak_rss_ratio")
        if c.get("reference_measured"):
            met = None if speed is None or memory is None else speed >= fast and memory <= small
            rows.append(
                f"| SuperNet one forward+backward, batch {c['batch']} ({shape}): ours (defaults) / DARTS reference "
                f"| {_fmt(speed)}x speed ({_fmt(c.get('ours_seconds'))} s vs {_fmt(c.get('reference_seconds'))} s), "
                f"{_fmt(memory)}x peak RSS ({_fmt(c.get('ours_peak_rss_gib'))} vs "
                f"{_fmt(c.get('reference_peak_rss_gib'))} GiB) | >= {fast:g}x, <= {small:g}x | {_met(met)} (speed "
                f"{_met(None if speed is None else speed >= fast)}, memory "
                f"{_met(None if memory is None else memory <= small)}) |"
            )
        else:
            predicted = c.get("peak_rss_ratio_vs_predicted_reference")
            rows.append(
                f"| SuperNet one forward+backward, batch {c['batch']} ({shape}): reference not run "
                f"({c.get('reference_note')}) | ours {_fmt(c.get('ours_seconds'))} s, {_fmt(predicted)}x the "
                f"reference's predicted peak RSS | <= {small:g}x | "
                f"{_met(None if predicted is None else predicted <= small)} (memory) |"
            )
    for c in (r.get("evaluation_network") or {}).get("comparisons", []):
        rows.append(
            f"| evaluation Network training step (every primitive), batch {c['batch']}: after (channels_last + "
            f"fast_conv, the default) / before (default layout) | {_fmt(c.get('samples_per_s_ratio'))}x speed "
            f"({_fmt(c.get('after_seconds'))} s vs {_fmt(c.get('before_seconds'))} s), "
            f"{_fmt(c.get('peak_rss_ratio'))}x peak RSS | measure | — |"
        )
    top = (r.get("profile") or {}).get("top_ops", [])
    if top:
        shares = ", ".join(f"{op['op']} {op['share']:.0%}" for op in top[:6])
        rows.append(
            f"| where our forward+backward's time goes (batch {r['profile'].get('batch')}, self CPU, "
            f"torch.profiler) | {shares} | measure | — |"
        )
    for dtype, check in (r.get("equivalence") or {}).items() if equivalence else ():
        first = check.get("alpha_grad_first", {}).get("max_rel")
        second = check.get("alpha_grad_second", {}).get("max_rel")
        rows.append(
            f"| same alpha gradients as the reference ({dtype}, batch 2, 1x{check.get('setting', {}).get('height')}"
            f"x{check.get('setting', {}).get('width')}): max relative difference, first / second order | "
            f"{_fmt(first)} / {_fmt(second)} | rounding | — |"
        )
    return rows or ["| SuperNet search step vs DARTS reference | see supernet.json | | |"]


def _recipe(r: dict) -> list[str]:
    test, valid, goal = r["mean_test_ua"], r["mean_valid_ua"], r["goal"]
    folds, speakers = (
        r["comparisons"]["searched_vs_handmade"]["folds"],
        r["comparisons"]["searched_vs_handmade"]["speakers"],
    )
    low, high = folds["interval_95"]
    rows = r["ablation"]["rows"]
    costs = ", ".join(
        f"{name} {a['valid_cost']:+.3f} (Holm p {a['valid_folds']['p_holm']:.2g} / {a['valid_speakers']['p_holm']:.2g}; "
        f"test {a['test_cost']:+.3f})"
        for name, a in rows.items()
        if "valid_cost" in a
    )
    return [
        f"| recipe, {r['protocol']}: mean test UA (validation) searched / hand-made / logistic regression on MFCC "
        f"stats standardised on training speakers / per speaker | {_fmt(test['searched'])} ({_fmt(valid['searched'])}) / "
        f"{_fmt(test['handmade'])} ({_fmt(valid['handmade'])}) / {_fmt(test['logistic'])} / "
        f"{_fmt(test['logistic_per_speaker'])}; searched - hand-made {folds['mean_difference']:+.3f} "
        f"[{low:+.3f}, {high:+.3f}], p = {_fmt(folds['p_value'])} over {folds['n']} folds (seeds averaged), "
        f"p = {_fmt(speakers['p_value'])} over {speakers['n']} test speakers | fold p < 0.05, both > both logistic | "
        f"{_met(goal['met'])} (p {_met(goal['searched_beats_handmade_fold_p_below_0.05'])}, "
        f"vs logistic {_met(goal['both_beat_logistic'])}) |",
        f"| recipe ablation decided on validation (fixed genotypes, validation UA lost when a component changes; "
        f"Holm-corrected p over folds / validation speakers; test beside) | {costs} | measure | — |",
    ]


def _sequence_step(r: dict) -> list[str]:
    cells = []
    for shape, ratio in r["ratios"].items():
        fixed, searched = (next(x for x in r["runs"] if x["shape"] == shape and x["head"] == h) for h in r["heads"])
        cells.append(
            f"{shape}: {searched['seconds_median'] * 1000:.0f} vs {fixed['seconds_median'] * 1000:.0f} ms per step "
            f"(x{ratio['step_time']}), peak RSS x{ratio['peak_rss']} ({searched['peak_rss_bytes'] / 2**20:.0f} MiB)"
        )
    return [
        "| search step with a searched sequence cell vs the fixed LSTM (first order, one thread, same run) | "
        + "; ".join(cells)
        + " | measure | — |"
    ]


def _search_value(r: dict) -> list[str]:
    budgets, table, goal = r["budgets"], r["table"], r["goal"]
    chosen = goal["chosen_method"]
    methods = list(r["methods"])
    random_name, logistic_name = "random controls (mean of K)", "logistic regression (per speaker)"
    ran = (
        f"LOSO folds {budgets['folds']} x {len(budgets['seeds'])} seed(s), K = {budgets['random_controls']} random "
        f"cells, {budgets['search_epochs']} search / {budgets['eval_epochs']} evaluation epochs"
    )
    uas = ", ".join(f"{name} {_fmt(table[name]['valid_ua'])} / {_fmt(table[name]['test_ua'])}" for name in methods)
    standing = r["standing"][chosen]["test"]
    taus = ", ".join(
        f"{m} {_fmt(tau, 2)}" for m in methods if (tau := r["kendall_tau"][m]["running"]["mean_tau"]) == tau
    )  # NaN (no supernet scored the controls: darts-sequence) left out
    tests = r["tests"]
    return [
        f"| search value ({ran}): mean valid / test UA per method, chosen by validation: {chosen} | {uas}; random "
        f"{_fmt(table[random_name]['valid_ua'])} / {_fmt(table[random_name]['test_ua'])}, hand-made "
        f"{_fmt(table['hand-made']['valid_ua'])} / {_fmt(table['hand-made']['test_ua'])}, logistic (per speaker) "
        f"test {_fmt(table[logistic_name]['test_ua'])} | chosen > random mean and > hand-made (p < 0.05 one-sided, "
        f"folds as unit; floor {_fmt(goal['smallest_possible_p'])}), networks > logistic | {_met(goal['met'])} "
        f"(p {_fmt(tests['vs_random_mean'][chosen]['p_value'])} {_met(goal['beats_random_mean_p_below_0.05'])}, "
        f"p {_fmt(tests['vs_handmade'][chosen]['p_value'])} {_met(goal['beats_handmade_p_below_0.05'])}, "
        f"vs logistic {_met(goal['networks_beat_logistic'])}) |",
        f"| search value: {chosen} among the random cells (test UA), and the supernets' ranking of them (Kendall "
        f"tau, shared-weight UA vs stand-alone validation UA, mean over folds) | percentile "
        f"{_fmt(standing['mean_percentile'])}, beats {standing['beats_controls']} of {r['standing'][chosen]['controls']}"
        f", RI {standing['relative_improvement']:+.1f} %; tau (running BatchNorm statistics) {taus} | measure | — |",
        *_sequence_rows(r.get("sequence_vs_fixed_lstm")),
    ]


def _sequence_rows(sequence: dict | None) -> list[str]:
    """Issue 28's evidence: DARTS with a searched sequence cell vs the fixed LSTM, decided on validation."""
    if not sequence:
        return []
    valid, test, seconds = sequence["validation"], sequence["test"], sequence["train_seconds"]
    low, high = valid["interval_95"]
    return [
        f"| search value: searched sequence cell vs fixed LSTM (DARTS, same folds, seeds and budgets; validation "
        f"decides, two-sided over folds) | valid {valid['mean_difference']:+.3f} [{low:+.3f}, {high:+.3f}], "
        f"p = {_fmt(valid['p_value'])} ({valid['wins']} of {valid['n']} folds); test {test['mean_difference']:+.3f}; "
        f"search + evaluation {_fmt(seconds['darts-sequence'], 0)} s vs {_fmt(seconds['darts'], 0)} s per fold | "
        f"validation prefers: {sequence['validation_prefers']} | "
        f"{'resolved' if sequence['resolved'] else 'unresolved (p >= 0.05)'} |",
    ]


SUMMARIES: dict[str, Callable[[dict], list[str]]] = {
    "manifest": _manifest,
    "baseline_ua": _baseline,
    "features": _features,
    "ssl_features": _ssl_features,
    "leaderboard": _leaderboard,
    "predictions": _predictions,
    "sequence_step": _sequence_step,
    "orchestration": _orchestration,
    "driver_memory": _driver_memory,
    "pruning": _pruning,
    "supernet": _supernet,
    "supernet_paper": lambda r: _supernet(r, equivalence=False),
    "recipe": _recipe,
    "search_value": _search_value,
}


def write_summary(results: Path, timings: dict[str, dict]) -> Path:
    lines = [
        "# Benchmark results",
        "",
        "Written by `python benchmarks/run_all.py` from the JSON files beside this one (each holds the",
        "details and the machine). Ratios compare runs made in the same process or run, on a 2-core CPU;",
        "other work on the machine makes single seconds noisy.",
        "",
        "| what | result | goal | status |",
        "| --- | --- | --- | --- |",
    ]
    for name, summarize in SUMMARIES.items():
        path = results / f"{name}.json"
        if not path.exists():
            lines.append(f"| {name} | not run (`python benchmarks/run_all.py --only {name}`) | | |")
            continue
        try:
            lines += summarize(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            lines.append(f"| {name} | unreadable result ({error}) | | |")
    if timings:
        default = [name for name in DEFAULT if name in timings]
        total = sum(timings[name]["seconds"] for name in default)
        lines += [
            "",
            "Seconds of each benchmark's last run: "
            + ", ".join(f"{name} {t['seconds']:.0f}{'' if t['ok'] else ' (FAILED)'}" for name, t in timings.items())
            + f"; the default set (`python benchmarks/run_all.py`) takes {total / 60:.1f} min"
            + ("" if len(default) == len(DEFAULT) else " (not all of it run yet)")
            + ".",
        ]
    out = results / "SUMMARY.md"
    write_text_atomically(out, "\n".join(lines) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--skip", nargs="*", choices=sorted(BENCHMARKS), default=[])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    chosen = [
        name
        for name in BENCHMARKS
        if (name in args.only if args.only is not None else name in DEFAULT) and name not in args.skip
    ]
    args.results.mkdir(parents=True, exist_ok=True)
    timings: dict[str, dict] = {}
    started = time.perf_counter()
    for name in chosen:
        script, arguments = BENCHMARKS[name]
        command = [sys.executable, str(HERE / script), *arguments, "--out", str(args.results / f"{name}.json")]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        begin = time.perf_counter()
        done = subprocess.run(command, cwd=REPO)
        timings[name] = {
            "seconds": round(time.perf_counter() - begin, 1),
            "ok": done.returncode == 0,
            "returncode": done.returncode,
        }
        print(
            f"== {name}: {'ok' if done.returncode == 0 else f'FAILED (exit {done.returncode})'} in "
            f"{timings[name]['seconds']:.0f} s (total {(time.perf_counter() - started) / 60:.1f} min)",
            flush=True,
        )
    record = args.results / "run_all.json"  # every benchmark's last run, this one's merged in
    try:
        previous = json.loads(record.read_text()).get("benchmarks", {})
    except (OSError, ValueError):
        previous = {}
    timings = {name: {**previous, **timings}[name] for name in BENCHMARKS if name in {**previous, **timings}}
    write_text_atomically(record, json.dumps({"benchmarks": timings}, indent=2) + "\n")
    summary = write_summary(args.results, timings)
    print(summary.read_text())
    return 0 if all(timings[name]["ok"] for name in chosen) else 1


if __name__ == "__main__":
    raise SystemExit(main())
