#!/usr/bin/env python3
"""The official `openai` Python client against `qwen3-omni-vk serve` (docs/server.md).

Usage: openai_client_test.py BINARY MODEL.gguf
Starts the server on 127.0.0.1:0 (the demo model: its replies are gibberish, its speech noise of the
right length), then through the client: models.list, chat completions with audio out whole and
streamed, a transcription, streamed speech. All traffic stays on loopback, every call has a
timeout, and the server is killed at the end. Exit status 0 when every check passes.
"""
import base64
import io
import math
import struct
import subprocess
import sys
import time
import urllib.request
import wave

import openai

KEY = "client-test-key"


def tone_wav(rate=16000, seconds=1.0):
    b = io.BytesIO()
    with wave.open(b, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i * 0.05))) for i in range(int(rate * seconds))))
    return b.getvalue()


def frames_of(samples):
    """T for a whole Code2Wav decode of 1920·T − 555 samples (None if the count is not of that form)."""
    t, r = divmod(samples + 555, 1920)
    return t if r == 0 and t > 0 else None


def main():
    binary, model = sys.argv[1], sys.argv[2]
    srv = subprocess.Popen(
        [binary, "serve", "-m", model, "--port", "0", "-c", "512", "-n", "6", "--max-frames", "5", "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        line = srv.stdout.readline()
        assert "listening on http://" in line, line
        base = line.split("listening on ")[1].strip()
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            assert time.time() < deadline, "server not ready"
            time.sleep(0.2)
        c = openai.OpenAI(base_url=base + "/v1", api_key=KEY, timeout=120, max_retries=0)
        checks = 0

        ids = [m.id for m in c.models.list()]
        assert ids == ["demo"], ids
        checks += 1

        # Chat with audio out, whole.
        r = c.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hello"}], max_tokens=3,
            modalities=["text", "audio"], audio={"voice": "ethan", "format": "wav"},
        )
        a = r.choices[0].message.audio
        wav = base64.b64decode(a.data)
        with wave.open(io.BytesIO(wav)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
            n = w.getnframes()
        assert frames_of(n), n
        assert a.transcript == r.choices[0].message.content and a.id
        assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens == 3
        checks += 1

        # Chat with audio out, streamed: text deltas and base64 pcm16 chunks.
        text, pcm, usage = "", b"", None
        stream = c.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "Hello"}], max_tokens=3, stream=True,
            stream_options={"include_usage": True}, modalities=["text", "audio"],
            audio={"voice": "chelsie", "format": "pcm16"},
        )
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for ch in chunk.choices:
                text += ch.delta.content or ""
                au = getattr(ch.delta, "audio", None)
                data = (au.get("data") if isinstance(au, dict) else getattr(au, "data", None)) if au else None
                if data:
                    pcm += base64.b64decode(data)
        assert usage is not None and usage.completion_tokens == 3, usage
        assert frames_of(len(pcm) // 2), len(pcm)
        assert usage.prompt_tokens_details.cached_tokens > 0, usage
        checks += 1

        # A transcription.
        t = c.audio.transcriptions.create(model="demo", file=("q.wav", tone_wav(), "audio/wav"))
        assert isinstance(t.text, str)
        checks += 1

        # Streamed speech (raw pcm).
        got = b""
        with c.audio.speech.with_streaming_response.create(
            model="demo", voice="aiden", input="Hello world", response_format="pcm"
        ) as resp:
            for b in resp.iter_bytes():
                got += b
        assert frames_of(len(got) // 2), len(got)
        checks += 1

        # An error object comes back as the client's exception with the right status.
        try:
            c.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}], temperature=9)
            raise AssertionError("temperature 9 accepted")
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.body["param"] == "temperature", e.body
        checks += 1
        print(f"openai client: {checks} passed, 0 failed")
    finally:
        srv.kill()
        srv.wait(timeout=30)


if __name__ == "__main__":
    main()
