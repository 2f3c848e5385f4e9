"""CPU of the fast output rails on a streamed answer (issue 22 item 1), side by side:

- **single pass**: `FastRails.check` once over the whole answer (what the JSON path pays);
- **stream guard**: `StreamGuard.feed` on every delta, then `flush` (what a stream pays now);
- **rerun per delta**: every rail over the whole answer so far on each delta (the guard before
  issue 22; kept here, 6 lines, only as the reference).

Both rails on (`blocked_terms` with 40 terms, `pii_mask`), an answer of ordinary prose with an
e-mail address, a card number and a phone number every few hundred characters, cut into
deltas of 4 characters (about one token each). CPU is `time.process_time` of this process, the
best of `--repeat` runs (other processes on a shared machine can only add to it).

    .venv/bin/python bench/stream_rails.py [--chars 2000,8000] [--delta 4] [--repeat 5]

Target: the stream guard within 2x of the single pass at 8k characters.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from aistack.api.v1alpha1.guardrails import GuardrailsSpec
from aistack.runtime.guardrails.fast import FastRails
from aistack.runtime.guardrails.guard import Guard
from aistack.runtime.guardrails.stream import StreamGuard

SPEC = GuardrailsSpec(output=["blocked_terms", "pii_mask"],
                      blocked_terms=[f"forbidden-{i}" for i in range(38)] + ["Project X", "internal-only"])
PARAGRAPH = ("The gateway relays the model's answer to the client as it is generated, and the output "
             "rails watch every delta on the way. Write to jane.doe@example.com or call +1 415-555-0100; "
             "the test card 4111 1111 1111 1111 is masked as well. Retrieval, prompts and tracing are "
             "described in the architecture document, section by section. ")


def answer(chars: int) -> str:
    return (PARAGRAPH * (chars // len(PARAGRAPH) + 1))[:chars]


def single_pass(text: str, deltas: list[str]) -> None:
    FastRails(spec=SPEC, side="output").check(text)


def stream_guard(text: str, deltas: list[str]) -> None:
    sg = StreamGuard(Guard(spec=SPEC, llm=None))
    for delta in deltas:
        sg.feed(delta)
    sg.flush()


def rerun_per_delta(text: str, deltas: list[str]) -> None:
    rails, raw = FastRails(spec=SPEC, side="output"), ""
    for delta in deltas:
        raw += delta
        rails.check(raw)
    rails.check(raw)


def cpu_ms(fn: Callable[[str, list[str]], None], text: str, deltas: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        fn(text, deltas)
        best = min(best, time.process_time() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", default="2000,8000", help="answer lengths, comma-separated")
    parser.add_argument("--delta", type=int, default=4, help="characters per delta")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (the best counts)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"deltas of {args.delta} characters; CPU ms per answer, best of {args.repeat}")
    print(f"{'chars':>7} {'single pass':>12} {'stream guard':>13} {'ratio':>6} {'rerun per delta':>16}")
    ratios = {}
    for chars in (int(c) for c in args.chars.split(",")):
        text = answer(chars)
        deltas = [text[i:i + args.delta] for i in range(0, len(text), args.delta)]
        one = cpu_ms(single_pass, text, deltas, args.repeat)
        guarded = cpu_ms(stream_guard, text, deltas, args.repeat)
        rerun = cpu_ms(rerun_per_delta, text, deltas, max(1, args.repeat // 2))
        ratios[chars] = guarded / one
        print(f"{chars:>7} {one:>12.2f} {guarded:>13.2f} {guarded / one:>5.1f}x {rerun:>16.1f}")
    worst = max(ratios.values())
    print(f"target: stream guard <= 2x the single pass: {'met' if worst <= 2 else 'NOT met'} "
          f"(worst {worst:.1f}x)")


if __name__ == "__main__":
    main()
