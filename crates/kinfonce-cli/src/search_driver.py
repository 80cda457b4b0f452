"""The driver of `kinfonce search`: an Optuna study whose trials are `kinfonce pretrain` runs.

`kinfonce search` validates its arguments, writes the resolved search to DIR/search.json and
runs this file with the project's Python: `python search_driver.py DIR/search.json`. Each trial
is a run folder DIR/trials/NNN; its per-epoch validation monitor (from metrics.jsonl, read as the
lines appear) is reported to Optuna's successive-halving pruner, which stops the run with SIGTERM
(the run saves a checkpoint and exits). At the end DIR/trials.json lists every trial, and
`kinfonce search` writes the report from it.

Resumability: a trial's parameters are drawn by Optuna's RandomSampler seeded from (study seed,
trial number, parameter), so a retried trial gets the same ones. While a trial runs, its driver
holds an flock on DIR/trials/NNN.lock; a RUNNING trial whose lock is free belongs to a dead
driver and is taken over by the next search on this folder: resumed from its newest checkpoint,
or started again when it has none.
"""

import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings

try:
    import optuna
    from optuna.trial import TrialState
except ImportError:
    print(
        f"error: Optuna is not installed in {sys.executable} (`bash scripts/env.sh` installs it;"
        " or pip install optuna==4.6.0)",
        file=sys.stderr,
    )
    sys.exit(1)

POLL_S = 0.2


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def open_storage(url):
    """The study's storage: `journal:PATH` (Optuna's journal file, safe for several processes
    through its own file lock) or a database URL (SQLite waits for a busy database instead of
    failing)."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = url[len("journal:"):]
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise RuntimeError(f"folder {folder} does not exist")
        return JournalStorage(JournalFileBackend(path))
    engine_kwargs = {}
    if url.startswith("sqlite:"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Random search whose draws are a function of (study seed, trial number, parameter) alone,
    so a search restarted after a kill draws the same parameters for the same trial number."""

    def __init__(self, seed):
        self.seed = seed

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, name, distribution):
        key = f"{self.seed}:{trial.number}:{name}".encode()
        seed = int.from_bytes(hashlib.sha256(key).digest()[:4], "little")
        return optuna.samplers.RandomSampler(seed=seed).sample_independent(
            study, trial, name, distribution
        )


def suggest(trial, param):
    if "choices" in param:
        return trial.suggest_categorical(param["name"], param["choices"])
    return trial.suggest_float(param["name"], param["low"], param["high"], log=param["log"])


def flag_value(value):
    return repr(float(value)) if isinstance(value, float) else str(value)


class Search:
    def __init__(self, spec):
        self.spec = spec
        self.out = spec["out"]
        self.trials_dir = os.path.join(self.out, "trials")
        os.makedirs(self.trials_dir, exist_ok=True)
        self.claim_lock = threading.Lock()
        self.stopping = threading.Event()
        self.deadline = (
            time.monotonic() + spec["timeout_s"] if spec.get("timeout_s") else None
        )
        self.children = set()
        self.children_lock = threading.Lock()

    def open(self):
        try:
            storage = open_storage(self.spec["storage"])
            pruner = optuna.pruners.SuccessiveHalvingPruner(
                min_resource=self.spec["grace_epochs"],
                reduction_factor=self.spec["reduction_factor"],
                min_early_stopping_rate=0,
            )
            self.study = optuna.create_study(
                study_name=self.spec["study_name"],
                storage=storage,
                sampler=TrialSeededSampler(self.spec["seed"]),
                pruner=pruner,
                direction="maximize",
                load_if_exists=True,
            )
        except Exception as e:  # every storage backend has its own exception types
            fail(f"storage {self.spec['storage']} cannot be opened: {one_line(e)}")
        # One study, one search: a second search with other settings is refused.
        signature = json.dumps(self.spec["trajectory"], sort_keys=True)
        saved = self.study.user_attrs.get("search")
        if saved is None:
            self.study.set_user_attr("search", signature)
        elif saved != signature:
            fail(
                f"study {self.spec['study_name']} in {self.spec['storage']} was started with other "
                "settings (space, family, epochs, seed or pretrain flags); use another --out or "
                "--study-name"
            )

    def folder(self, number):
        return os.path.join(self.trials_dir, f"{number:03d}")

    def lock(self, number):
        """The trial's lock, held while it runs; None when another live driver holds it."""
        fd = os.open(os.path.join(self.trials_dir, f"{number:03d}.lock"), os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def claim(self):
        """The next trial to run (with its lock), or None when the study is done: first a RUNNING
        trial of this folder left by a dead driver, then a new one while fewer than `trials`
        exist and time is left."""
        with self.claim_lock:
            if self.stopping.is_set() or self.timed_out():
                return None
            trials = self.study.get_trials(deepcopy=False)
            for t in trials:
                if t.state != TrialState.RUNNING or not os.path.isdir(self.folder(t.number)):
                    continue
                fd = self.lock(t.number)
                if fd is None:
                    continue
                # Re-read after locking: its owner may have finished meanwhile.
                if self.study._storage.get_trial(t._trial_id).state != TrialState.RUNNING:
                    os.close(fd)
                    continue
                print(f"search: taking over trial {t.number} from a stopped search", file=sys.stderr)
                return optuna.trial.Trial(self.study, t._trial_id), fd
            if len(trials) >= self.spec["trials"]:
                return None
            trial = self.study.ask()
            trial.set_user_attr("owner", f"{socket.gethostname()}:{os.getpid()}")
            fd = self.lock(trial.number)
            return trial, fd

    def timed_out(self):
        return self.deadline is not None and time.monotonic() >= self.deadline

    def command(self, trial, folder):
        binary = self.spec["binary"]
        threads = ["--threads", str(self.spec["threads_per_trial"])]
        checkpoints = os.path.join(folder, "checkpoints")
        # Finished checkpoints only (one being written is a hidden temporary folder).
        if os.path.isdir(checkpoints) and any(
            name.startswith("step-") for name in os.listdir(checkpoints)
        ):
            return [binary, "pretrain", "--resume", folder] + threads
        if os.path.isdir(folder):
            # Started but killed before its first checkpoint: start it again.
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    os.remove(path)
        params = [
            a
            for p in self.spec["space"]
            for a in (p["flag"], flag_value(suggest(trial, p)))
        ]
        return (
            [binary, "pretrain"]
            + self.spec["pretrain_args"]
            + params
            + ["--epochs", str(self.spec["max_epochs"])]
            + threads
            + ["--out", folder]
        )

    def run_trial(self, trial, fd):
        number = trial.number
        folder = self.folder(number)
        cmd = self.command(trial, folder)
        os.makedirs(folder, exist_ok=True)
        metric = self.spec["metric"]
        reported = set(trial.study._storage.get_trial(trial._trial_id).intermediate_values)
        log = open(os.path.join(folder, "pretrain.log"), "ab")
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        child = subprocess.Popen(
            cmd, stdout=log, stderr=log, env=env, preexec_fn=die_with_parent
        )
        with self.children_lock:
            self.children.add(child)
        print(f"search: trial {number} started: {' '.join(cmd[1:])}", file=sys.stderr)
        metrics_path = os.path.join(folder, "metrics.jsonl")
        offset, last, pruned = 0, None, False
        while True:
            done = child.poll() is not None
            offset, lines = read_new_lines(metrics_path, offset)
            for line in lines:
                record = json.loads(line)
                if record.get("kind") != "epoch" or record.get(metric) is None:
                    continue
                epoch, value = record["epoch"], record[metric]
                last = value
                if epoch not in reported:
                    trial.report(value, epoch)
                    reported.add(epoch)
                if epoch < self.spec["max_epochs"] and trial.should_prune():
                    pruned = True
                    break
            if pruned or done:
                break
            time.sleep(POLL_S)
        if pruned:
            child.send_signal(signal.SIGTERM)
        code = child.wait()
        with self.children_lock:
            self.children.discard(child)
        log.close()
        if pruned:
            self.study.tell(trial, state=TrialState.PRUNED)
            state = "pruned"
        elif code == 0 and last is not None:
            self.study.tell(trial, last)
            state = f"complete, {metric} {last:.4f}"
        elif self.stopping.is_set():
            # Stopped by the user: left RUNNING, so the next search resumes it.
            os.close(fd)
            return
        else:
            reason = last_line(os.path.join(folder, "pretrain.log"))
            trial.set_user_attr("error", reason)
            self.study.tell(trial, state=TrialState.FAIL)
            state = f"failed (exit {code}): {reason}"
        os.close(fd)
        print(f"search: trial {number} {state}", file=sys.stderr)

    def worker(self):
        while not self.stopping.is_set():
            claimed = self.claim()
            if claimed is None:
                return
            self.run_trial(*claimed)

    def stop(self, signum, _frame):
        """Ctrl-C / SIGTERM: the running trials save a checkpoint and stop; they stay RUNNING
        so the next search resumes them."""
        self.stopping.set()
        with self.children_lock:
            for child in self.children:
                child.send_signal(signal.SIGTERM)

    def write_trials(self):
        rows = []
        for t in self.study.get_trials(deepcopy=False):
            folder = self.folder(t.number)
            rows.append(
                {
                    "number": t.number,
                    "state": t.state.name.lower(),
                    "params": t.params,
                    "value": t.value,
                    "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                    "folder": os.path.relpath(folder, self.out) if os.path.isdir(folder) else None,
                }
            )
        path = os.path.join(self.out, "trials.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"metric": self.spec["metric"], "trials": rows}, f, indent=1)
        os.replace(tmp, path)


def one_line(e):
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def last_line(path):
    try:
        with open(path, "rb") as f:
            lines = [l for l in f.read().decode(errors="replace").splitlines() if l.strip()]
        return lines[-1] if lines else "no output"
    except OSError:
        return "no output"


def read_new_lines(path, offset):
    """The complete lines appended to `path` since `offset`, and the new offset."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < offset:  # a resumed run rewrote the file
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset, []
    end = data.rfind(b"\n") + 1
    lines = [l for l in data[:end].decode().splitlines() if l.strip()]
    return offset + end, lines


def die_with_parent():
    """A trial must not outlive its driver (a killed search would leave it training)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    search = Search(spec)
    search.open()
    signal.signal(signal.SIGINT, search.stop)
    signal.signal(signal.SIGTERM, search.stop)
    workers = [threading.Thread(target=search.worker) for _ in range(spec["parallel"])]
    for w in workers:
        w.start()
    # Join with a timeout so the main thread keeps handling signals.
    while any(w.is_alive() for w in workers):
        for w in workers:
            w.join(timeout=0.5)
    search.write_trials()
    if search.stopping.is_set():
        sys.exit(130)


if __name__ == "__main__":
    main()
