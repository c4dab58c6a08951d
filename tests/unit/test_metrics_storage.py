"""metrics.storage.compact: files of dead processes merged by prometheus_client's rules, live ones untouched."""

import os

from prometheus_client.mmap_dict import MmapedDict, mmap_key

from django_observe.metrics import storage

LIVE, DEAD1, DEAD2 = 100, 201, 202


def write(path, prefix, pid, values):
    d = MmapedDict(os.path.join(path, f"{prefix}_{pid}.db"))
    for key, (value, ts) in values.items():
        d.write_value(key, value, ts)
    d.close()


def read(path, name):
    return {k: (v, ts) for k, v, ts, _ in MmapedDict.read_all_values_from_file(os.path.join(path, name))}


def key(name):
    return mmap_key(name, name, [], [], "help")


def test_dead_processes_are_merged_by_type_and_mode(tmp_path):
    path = str(tmp_path)
    c = key("c_total")
    write(path, "counter", LIVE, {c: (5.0, 0.0)})
    write(path, "counter", DEAD1, {c: (2.0, 0.0)})
    write(path, "counter", DEAD2, {c: (3.0, 0.0)})
    g = key("g")
    write(path, "gauge_max", DEAD1, {g: (7.0, 0.0)})
    write(path, "gauge_max", DEAD2, {g: (4.0, 0.0)})
    write(path, "gauge_mostrecent", DEAD1, {g: (1.0, 10.0)})
    write(path, "gauge_mostrecent", DEAD2, {g: (2.0, 5.0)})
    write(path, "gauge_livesum", DEAD1, {g: (9.0, 0.0)})
    write(path, "gauge_all", DEAD1, {g: (9.0, 0.0)})

    removed = storage.compact(path, lambda pid: pid == LIVE)

    assert removed == 8
    names = sorted(n for n in os.listdir(path) if n.endswith(".db"))
    assert names == ["counter_100.db", "counter_merged.db", "gauge_max_merged.db", "gauge_mostrecent_merged.db"]
    assert read(path, "counter_merged.db")[c][0] == 5.0
    assert read(path, "gauge_max_merged.db")[g][0] == 7.0
    assert read(path, "gauge_mostrecent_merged.db")[g][0] == 1.0

    write(path, "counter", DEAD1, {c: (4.0, 0.0)})  # a later generation adds to the merged file
    storage.compact(path, lambda pid: pid == LIVE)
    assert read(path, "counter_merged.db")[c][0] == 9.0
    assert read(path, "counter_100.db")[c][0] == 5.0


def test_a_compaction_during_a_scrape_never_counts_a_dead_process_twice(tmp_path, monkeypatch):
    """A scrape lists the files, reads a dead process's file; a compactor (a real process) merges that file
    into the merged file and removes it; the scrape then read the new merged file: the dead process was
    counted twice (or the scrape failed on the removed file). Forced interleaving: the compactor runs from a
    hook after the scrape's first file read, in every iteration."""
    import subprocess
    import sys

    from prometheus_client import mmap_dict

    from django_observe.metrics.exemplars import MultiProcessExemplarCollector

    path = str(tmp_path)
    me = os.getpid()
    c = key("c_total")
    write(path, "counter", me, {c: (1.0, 0.0)})
    compactor = f"from django_observe.metrics import storage; storage.compact({path!r}, lambda pid: pid == {me})"
    original = mmap_dict.MmapedDict.read_all_values_from_file
    reads: list[str] = []

    def read_then_compact(filename):
        values = list(original(filename))
        reads.append(filename)
        if len(reads) == 1:
            subprocess.run([sys.executable, "-c", compactor], check=True, timeout=120)
        return values

    monkeypatch.setattr(mmap_dict.MmapedDict, "read_all_values_from_file", staticmethod(read_then_compact))
    collector = MultiProcessExemplarCollector(path, lambda pid: pid == me)
    expected, totals = 1.0, []
    for dead in range(1000, 1012):  # a recycled worker's file in every iteration
        write(path, "counter", dead, {c: (1.0, 0.0)})
        expected += 1.0
        reads.clear()
        try:
            metrics = list(collector.collect())
        except FileNotFoundError:  # the compactor removed a file the scrape had listed
            totals.append(("scrape failed", expected))
            continue
        samples = [s for m in metrics if m.name.startswith("c") for s in m.samples if s.name == "c_total"]
        totals.append((sum(s.value for s in samples), expected))
    monkeypatch.undo()
    print("scraped vs expected:", totals)
    assert all(total == want for total, want in totals)
    # With no scrape reading, compaction runs: the dead processes' files are gone, their counts kept.
    storage.compact(path, lambda pid: pid == me)
    assert sorted(n for n in os.listdir(path) if n.endswith(".db")) == [f"counter_{me}.db", "counter_merged.db"]
    assert read(path, "counter_merged.db")[c][0] == expected - 1.0
