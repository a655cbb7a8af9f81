"""Thread settings: the physical cores by default, N when asked, adaptive only when asked and re-checked."""

import pytest

from ktune.errors import ConfigError
from ktune.threads import AUTO, AdaptiveThreads, CpuSampler, parse_threads, physical_cores, resolve_threads


def _sysfs(root, siblings: dict[int, str], package: str = "0"):
    for cpu, sib in siblings.items():
        topo = root / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "thread_siblings_list").write_text(sib + "\n")
        (topo / "physical_package_id").write_text(package + "\n")
    return root


@pytest.mark.parametrize("value, expected", [(None, AUTO), (0, AUTO), ("auto", AUTO), ("AUTO", AUTO), (3, 3),
                                             ("3", 3), ("adaptive", "adaptive"), (" 0 ", AUTO)])
def test_threads_settings_parse(value, expected):
    assert parse_threads(value) == expected


@pytest.mark.parametrize("bad", [-1, "-2", "many", "1.5", True])
def test_a_bad_threads_setting_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="threads"):
        parse_threads(bad)


def test_hyperthread_siblings_count_as_one_core(tmp_path):
    sysfs = _sysfs(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    assert physical_cores({0, 1, 2, 3}, sys_cpu=sysfs) == 2


def test_only_cores_in_the_affinity_set_count(tmp_path):
    sysfs = _sysfs(tmp_path, {0: "0", 1: "1", 2: "2", 3: "3"})
    assert physical_cores({1, 3}, sys_cpu=sysfs) == 2
    assert physical_cores({0, 2}, sys_cpu=_sysfs(tmp_path / "ht", {0: "0,2", 2: "0,2"})) == 1


def test_cpuinfo_is_the_fallback_when_sysfs_has_no_topology(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("".join(f"processor\t: {p}\nphysical id\t: 0\ncore id\t\t: {p % 2}\n\n" for p in range(4)))
    assert physical_cores({0, 1, 2, 3}, sys_cpu=tmp_path / "none", cpuinfo=cpuinfo) == 2
    assert physical_cores({0}, sys_cpu=tmp_path / "none", cpuinfo=cpuinfo) == 1


def test_without_any_topology_the_logical_cpus_count(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\n\nprocessor\t: 1\n\nprocessor\t: 2\n")
    assert physical_cores({0, 1, 2}, sys_cpu=tmp_path / "none", cpuinfo=cpuinfo) == 3
    assert physical_cores({0, 1}, sys_cpu=tmp_path / "none", cpuinfo=tmp_path / "missing") == 2


def test_auto_is_the_physical_cores_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.delenv("KTUNE_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_threads("auto") == physical_cores()
    assert resolve_threads(None) == physical_cores()
    assert resolve_threads(5) == 5
    monkeypatch.setenv("KTUNE_THREADS", "3")
    assert resolve_threads("auto") == 3
    assert resolve_threads("adaptive") == 3
    assert resolve_threads(1) == 1  # an explicit count wins over the environment


def test_processes_on_one_machine_share_the_cores(monkeypatch):
    monkeypatch.delenv("KTUNE_THREADS", raising=False)
    monkeypatch.setattr("ktune.threads.physical_cores", lambda: 8)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert resolve_threads("auto") == 4
    assert resolve_threads("auto", processes=16) == 1


def test_a_bad_environment_value_is_a_config_error(monkeypatch):
    monkeypatch.setenv("KTUNE_THREADS", "lots")
    with pytest.raises(ConfigError, match="KTUNE_THREADS"):
        resolve_threads("auto")


class _Sampler:
    def __init__(self, readings):
        self.readings = list(readings)

    def other_busy_cores(self):
        return self.readings.pop(0)


def test_adaptive_threads_go_down_under_load_and_back_up_when_it_ends():
    calls = []
    adaptive = AdaptiveThreads(every=10, cores=2, sampler=_Sampler([1.2, 0.1, None]), set_threads=calls.append)
    assert calls == [2]
    for step in range(1, 10):
        adaptive(step)
    assert calls == [2]  # only every 10 steps
    adaptive(10)
    assert adaptive.current == 1 and calls[-1] == 1
    adaptive(20)
    assert adaptive.current == 2 and calls[-1] == 2
    adaptive(30)  # no reading: keep what we have
    assert adaptive.current == 2
    assert adaptive.history == [(10, 1), (20, 2)]


def test_adaptive_threads_never_drop_below_one():
    adaptive = AdaptiveThreads(every=1, cores=2, sampler=_Sampler([7.0]), set_threads=lambda n: None)
    adaptive(1)
    assert adaptive.current == 1


def test_cpu_sampler_counts_other_processes_busy_time(tmp_path):
    import os

    tick = os.sysconf("SC_CLK_TCK")
    cpus = os.cpu_count() or 1
    stat = tmp_path / "stat"
    stat.write_text(f"cpu  0 0 0 {1000 * cpus} 0 0 0 0 0 0\n")
    sampler = CpuSampler(stat)
    # one second of wall time per CPU, of which one whole core busy (beyond this process's own few ms)
    stat.write_text(f"cpu  {tick} 0 0 {1000 * cpus + cpus * tick - tick} 0 0 0 0 0 0\n")
    busy = sampler.other_busy_cores()
    assert busy == pytest.approx(1.0, abs=0.2)


def test_train_config_accepts_auto_counts_and_adaptive_only():
    from ktune.train.config import TrainConfig

    assert TrainConfig().threads == AUTO
    assert TrainConfig(threads=0).threads == AUTO
    assert TrainConfig(threads="adaptive").threads == "adaptive"
    assert TrainConfig(threads="2").threads == 2
    with pytest.raises(ConfigError, match="threads"):
        TrainConfig(threads="half")
