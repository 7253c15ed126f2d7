"""A TEST server, not for production: an OpenAI-compatible `/v1/chat/completions` endpoint that
serves a local model through difficulty-curation's own transformers engine.

The openai backend's retries, keys and concurrency are tested against this process on 127.0.0.1
(the vLLM tier also tests it against a real `vllm serve`). It understands `n`, `temperature`, `top_p`,
`top_k`, `max_tokens`, `seed`, `chat_template_kwargs` and image parts sent as data URLs, and
reports each choice's real `finish_reason` ("length" when it hit `max_tokens`, else "stop"). For tests it can require an API
key (`--api-key`), fail its first requests with 503 (`--fail-first N`), reject its first requests
with 400 (`--reject-first N`), answer 401 once N requests were served (`--revoke-after N`, a key
revoked mid-run), echo the Authorization header in its error bodies as careless servers do
(`--echo-auth`), and reports how many requests it served and the most it had in flight at once
(`GET /stats`). With `--vllm-child-seeds` it seeds the children of an `n>1` request `seed, seed+1, ...`
as vLLM does (child i = the `n=1` answer seeded `seed + i`); without it, in a way of its own (child i is
not that answer), so the openai backend's start-up probe finds one request per rollout is needed.
With `--ignore-seed` it draws every request anew whatever its `seed`, as many hosted APIs do; with
`--content-parts` it answers each `content` as a list of two text parts, as some servers do.
The probe's requests (`user` = `PROBE_USER`) are answered without counting towards `/stats` or the
injected failures, which target the scoring requests.

    python tests/openai_test_server.py --model PATH [--port 0]   # prints "listening on http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from difficulty_curation.config import RolloutConfig, ScoringConfig
from difficulty_curation.engines.openai import PROBE_USER
from difficulty_curation.engines.transformers import TransformersEngine
from difficulty_curation.errors import RowError
from difficulty_curation.prompts import PromptRequest, _content_hash


class State:
    def __init__(
        self,
        engine: TransformersEngine,
        api_key: str | None,
        fail_first: int,
        reject_first: int = 0,
        revoke_after: int | None = None,
        echo_auth: bool = False,
        vllm_child_seeds: bool = False,
        ignore_seed: bool = False,
        content_parts: bool = False,
    ) -> None:
        self.engine, self.api_key, self.fail_first = engine, api_key, fail_first
        self.reject_first, self.revoke_after, self.echo_auth = reject_first, revoke_after, echo_auth
        self.answered = 0
        self.vllm_child_seeds = vllm_child_seeds
        self.ignore_seed = ignore_seed  # as many hosted APIs: each request draws anew, whatever its seed
        self.draws = 0
        self.content_parts = content_parts  # answer `content` as a list of text parts, as some servers do
        self.lock, self.generate_lock = threading.Lock(), threading.Lock()
        self.requests = self.in_flight = self.max_in_flight = 0


def to_request(messages: list[dict]) -> PromptRequest:
    ours, images = [], []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            ours.append({"role": message["role"], "content": [{"type": "text", "text": content}]})
            continue
        parts = []
        for part in content:
            if part["type"] == "image_url":
                payload = part["image_url"]["url"].split(",", 1)[1]
                images.append(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": part["text"]})
        ours.append({"role": message["role"], "content": parts})
    return PromptRequest(messages=ours, images=images, content_hash=_content_hash(ours, images))


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:  # quiet
            pass

        def reply(self, status: int, payload: dict) -> None:
            if status >= 400 and state.echo_auth:
                payload["error"]["authorization"] = self.headers.get("Authorization")
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/stats"):
                with state.lock:
                    self.reply(200, {"requests": state.requests, "max_in_flight": state.max_in_flight})
            else:
                self.reply(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self.reply(404, {"error": {"message": "not found"}})
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if state.api_key and self.headers.get("Authorization") != f"Bearer {state.api_key}":
                return self.reply(401, {"error": {"message": "invalid API key"}})
            if body.get("user") == PROBE_USER:  # the openai backend's start-up probe: not a scoring request
                return self.reply(*self.complete(body))
            with state.lock:
                state.requests += 1
                if state.revoke_after is not None and state.answered >= state.revoke_after:
                    return self.reply(401, {"error": {"message": "API key revoked"}})
                if state.fail_first > 0:
                    state.fail_first -= 1
                    return self.reply(503, {"error": {"message": "warming up"}})
                if state.reject_first > 0:
                    state.reject_first -= 1
                    return self.reply(400, {"error": {"message": "request rejected, try again later"}})
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                status, payload = self.complete(body)
            finally:
                with state.lock:  # before replying: the client may send its next request at once
                    state.in_flight -= 1
                    state.answered += 1
            self.reply(status, payload)

        def complete(self, body: dict) -> tuple[int, dict]:
            rollout = RolloutConfig(
                num_rollouts=int(body.get("n", 1)),
                temperature=float(body.get("temperature", 1.0)),
                top_p=float(body.get("top_p", 1.0)),
                top_k=int(body.get("top_k", 0)),
                max_new_tokens=int(body.get("max_tokens", 16)),
                seed=int(body.get("seed", 0)),
            )
            if state.ignore_seed:
                with state.lock:
                    state.draws += 1
                    rollout = dataclasses.replace(rollout, seed=state.draws)
            request = to_request(body["messages"])
            with state.generate_lock:  # one generation at a time; requests still queue concurrently
                state.engine.rollout = rollout
                # chat template variables, as vLLM takes them: a field of the request body
                state.engine.config = state.engine.config.replace(
                    chat_template_kwargs=body.get("chat_template_kwargs") or {}
                )
                if state.vllm_child_seeds and rollout.num_rollouts > 1:  # child i: the n=1 answer seeded seed + i
                    outcome = []
                    for child in range(rollout.num_rollouts):
                        state.engine.rollout = dataclasses.replace(rollout, num_rollouts=1, seed=rollout.seed + child)
                        (answer,) = state.engine.generate([request], 1)
                        if isinstance(answer, RowError):
                            outcome = answer
                            break
                        outcome += answer
                else:
                    (outcome,) = state.engine.generate([request], rollout.num_rollouts)
            if isinstance(outcome, RowError):
                return 400, {"error": {"message": str(outcome)}}

            # the engine's own finish reason: "length" when the answer hit max_tokens
            def content(text: str) -> str | list[dict]:
                if not state.content_parts:
                    return text
                half = len(text) // 2
                return [{"type": "text", "text": text[:half]}, {"type": "text", "text": text[half:]}]

            choices = [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": content(text)},
                    "finish_reason": text.finish_reason,
                }
                for i, text in enumerate(outcome)
            ]
            return 200, {"object": "chat.completion", "model": body.get("model"), "choices": choices}

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--reject-first", type=int, default=0)
    parser.add_argument("--revoke-after", type=int)
    parser.add_argument("--echo-auth", action="store_true")
    parser.add_argument("--vllm-child-seeds", action="store_true")
    parser.add_argument("--ignore-seed", action="store_true")
    parser.add_argument("--content-parts", action="store_true")
    args = parser.parse_args()
    engine = TransformersEngine(ScoringConfig(model=args.model), device="cpu")
    state = State(
        engine,
        args.api_key,
        args.fail_first,
        args.reject_first,
        args.revoke_after,
        args.echo_auth,
        vllm_child_seeds=args.vllm_child_seeds,
        ignore_seed=args.ignore_seed,
        content_parts=args.content_parts,
    )
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(state))
    print(f"listening on http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
