/*
 * chat.c: embed qwen3-omni-vk in a C program through its static library.
 *
 * Loads a model, lists the Vulkan devices, asks a question by text and prints the reply as it
 * streams while it is spoken (24 kHz PCM chunks written to a WAV file as they arrive), then asks a
 * follow-up in the same session (the history stays in the KV cache), and, given a WAV file, asks
 * about the recording.
 *
 * Build (from the repository root, after `cargo build -p qwen3-omni`):
 *   cc -std=c11 -Wall -Iinclude examples/c/chat.c target/debug/libqwen3_omni.a \
 *      -ldl -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o chat
 * The system libraries are what
 *   cargo rustc -p qwen3-omni --lib --crate-type staticlib -- --print native-static-libs
 * prints for your platform. Run:
 *   ./chat [MODEL.gguf] [QUESTION] [MAX_TOKENS] [RECORDING.wav|-] [REPLY.wav] [MAX_FRAMES]
 * (default model: models/demo.gguf, which `qwen3-omni-vk chat` builds on first use; the spoken
 * answer to QUESTION goes to REPLY.wav, default reply.wav, 16-bit mono 24 kHz, at most MAX_FRAMES
 * frames of 80 ms, default 1000).
 *
 * Exit status: 0 on success, 1 when a call fails, 2 when the Vulkan validation layer (on with
 * QWEN3VK_VALIDATION=1) reported anything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwen3_omni_vk.h"

#define CHECK(call)                                                                              \
    do {                                                                                         \
        qwen3_omni_status s_ = (call);                                                           \
        if (s_ != QWEN3_OMNI_OK) {                                                               \
            fprintf(stderr, "%s failed: %s: %s\n", #call, qwen3_omni_status_string(s_),          \
                    qwen3_omni_last_error());                                                    \
            return 1;                                                                            \
        }                                                                                        \
    } while (0)

struct wav_out;

struct reply {
    size_t pieces;
    size_t bytes;
    struct wav_out *wav; /* NULL: text only */
};

/* A tiny streaming WAV writer: 16-bit mono PCM, the header's sizes patched when it is closed. */
struct wav_out {
    FILE *f;
    uint32_t samples; /* written so far */
    size_t chunks;    /* PCM callbacks received */
    bool failed;
};

static void put_u32(unsigned char *p, uint32_t v) {
    p[0] = v & 0xff, p[1] = (v >> 8) & 0xff, p[2] = (v >> 16) & 0xff, p[3] = (v >> 24) & 0xff;
}

static void wav_header(unsigned char h[44], uint32_t samples, uint32_t rate) {
    uint32_t data = samples * 2;
    memcpy(h, "RIFF", 4);
    put_u32(h + 4, 36 + data);
    memcpy(h + 8, "WAVEfmt ", 8);
    put_u32(h + 16, 16);
    h[20] = 1, h[21] = 0; /* PCM */
    h[22] = 1, h[23] = 0; /* mono */
    put_u32(h + 24, rate);
    put_u32(h + 28, rate * 2); /* bytes per second */
    h[32] = 2, h[33] = 0;      /* block align */
    h[34] = 16, h[35] = 0;     /* bits per sample */
    memcpy(h + 36, "data", 4);
    put_u32(h + 40, data);
}

static int wav_open(struct wav_out *w, const char *path) {
    unsigned char h[44];
    memset(w, 0, sizeof *w);
    w->f = fopen(path, "wb");
    if (!w->f) return 1;
    wav_header(h, 0, QWEN3_OMNI_OUTPUT_SAMPLE_RATE);
    return fwrite(h, 1, sizeof h, w->f) != sizeof h;
}

static int wav_close(struct wav_out *w) {
    unsigned char h[44];
    int bad = w->failed;
    wav_header(h, w->samples, QWEN3_OMNI_OUTPUT_SAMPLE_RATE);
    bad |= fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof h, w->f) != sizeof h;
    bad |= fclose(w->f) != 0;
    w->f = NULL;
    return bad;
}

/* Speech: each chunk is converted to 16-bit and appended to the file as it arrives. */
static bool on_pcm(const float *samples, size_t n_samples, int32_t sample_rate, void *user_data) {
    struct wav_out *w = ((struct reply *)user_data)->wav;
    unsigned char buf[2 * 256];
    w->chunks++;
    if (sample_rate != QWEN3_OMNI_OUTPUT_SAMPLE_RATE) w->failed = true;
    for (size_t i = 0; i < n_samples;) {
        size_t n = 0;
        for (; n < 256 && i < n_samples; n++, i++) {
            float x = samples[i] < -1.0f ? -1.0f : samples[i] > 1.0f ? 1.0f : samples[i];
            int16_t v = (int16_t)(x * 32767.0f);
            buf[2 * n] = (unsigned char)(v & 0xff);
            buf[2 * n + 1] = (unsigned char)((v >> 8) & 0xff);
        }
        if (fwrite(buf, 2, n, w->f) != n) w->failed = true;
        w->samples += (uint32_t)n;
    }
    return !w->failed; /* false would stop the reply and its speech */
}

static bool on_progress(float progress, void *user_data) {
    (void)user_data;
    fprintf(stderr, "\rloading: %3d%%", (int)(progress * 100.0f + 0.5f));
    if (progress >= 1.0f) fputc('\n', stderr);
    return true; /* false would cancel the load */
}

static bool on_text(const char *text, size_t len, int32_t token, void *user_data) {
    struct reply *r = user_data;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    r->pieces++;
    r->bytes += len;
    return true; /* false would stop the reply */
}

static const char *stop_name(int32_t stop_reason) {
    switch (stop_reason) {
    case QWEN3_OMNI_STOP_END_OF_TURN: return "end of turn";
    case QWEN3_OMNI_STOP_MAX_TOKENS: return "max tokens";
    case QWEN3_OMNI_STOP_CANCELLED: return "cancelled";
    case QWEN3_OMNI_STOP_CONTEXT_FULL: return "context full";
    default: return "none";
    }
}

static void on_log(int32_t level, const char *text, void *user_data) {
    (void)user_data;
    fprintf(stderr, "[log %d] %s\n", (int)level, text);
}

/* One turn: `wav` (may be NULL) and then `question`, as one user message; spoken into `out` when
 * it is not NULL. */
static int ask(qwen3_omni_session *session, const char *wav, const char *question, int max_tokens,
               const char *out) {
    struct reply r = {0, 0, NULL};
    struct wav_out w;
    memset(&w, 0, sizeof w);
    /* Params structs always come from their *_default_params() function, which fills in
     * struct_size (the library refuses any other size); then change the fields you need. */
    qwen3_omni_generate_params gp = qwen3_omni_generate_default_params();
    qwen3_omni_generate_result res; /* written by every generate call, zeroed on a failure */
    gp.max_tokens = max_tokens;
    gp.text_callback = on_text;
    gp.user_data = &r;
    if (wav) {
        printf("> [%s]\n", wav);
        CHECK(qwen3_omni_session_add_audio_file(session, wav));
    }
    printf("> %s\n", question);
    CHECK(qwen3_omni_session_add_text(session, question));
    if (out) {
        if (wav_open(&w, out)) {
            fprintf(stderr, "%s: cannot write\n", out);
            return 1;
        }
        r.wav = &w;
        gp.pcm_callback = on_pcm;
    }
    qwen3_omni_status st = qwen3_omni_session_generate(session, &gp, &res);
    if (out && wav_close(&w)) {
        fprintf(stderr, "%s: write failed\n", out);
        return 1;
    }
    CHECK(st);
    printf("\n");
    fprintf(stderr, "[%d prompt tokens, %d reply tokens, stop: %s, %.1f ms prompt, %.1f ms reply]\n",
            (int)res.n_prompt_tokens, (int)res.n_tokens, stop_name(res.stop_reason), res.prompt_ms,
            res.generate_ms);
    if (res.n_tokens <= 0 || r.pieces == 0) {
        fprintf(stderr, "no text was streamed\n");
        return 1;
    }
    if (out) {
        fprintf(stderr, "[speech: %u samples in %zu chunks, %d frames, first audio after %.1f ms -> %s]\n",
                (unsigned)w.samples, w.chunks, (int)res.n_audio_frames, res.first_audio_ms, out);
        if (w.samples == 0 || (int64_t)w.samples != res.n_audio_samples) {
            fprintf(stderr, "no speech was streamed\n");
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "models/demo.gguf";
    const char *question = argc > 2 ? argv[2] : "What is the capital of France?";
    int max_tokens = argc > 3 ? atoi(argv[3]) : 16;
    const char *wav = argc > 4 && strcmp(argv[4], "-") != 0 ? argv[4] : NULL;
    const char *reply_wav = argc > 5 ? argv[5] : "reply.wav";
    int max_frames = argc > 6 ? atoi(argv[6]) : 1000;

    fprintf(stderr, "qwen3-omni-vk %s\n", qwen3_omni_version());
    CHECK(qwen3_omni_log_set(on_log, QWEN3_OMNI_LOG_WARN, NULL));

    /* Devices: first the count, then the list. */
    size_t n_devices = 0;
    int32_t chosen = -1;
    CHECK(qwen3_omni_device_list(NULL, 0, &n_devices, &chosen));
    qwen3_omni_device_info *devices = calloc(n_devices ? n_devices : 1, sizeof *devices);
    if (!devices) return 1;
    CHECK(qwen3_omni_device_list(devices, n_devices, &n_devices, &chosen));
    for (size_t i = 0; i < n_devices; i++)
        fprintf(stderr, "device %d: %s%s\n", (int)devices[i].index, devices[i].name,
                devices[i].suitable ? "" : " (unsuitable)");
    free(devices);

    qwen3_omni_model_params mp = qwen3_omni_model_default_params();
    /* The library and this header agree on the layout (a static library from another version
     * would refuse every params struct with QWEN3_OMNI_ERR_INVALID_ARGUMENT). */
    if (mp.struct_size != sizeof mp) {
        fprintf(stderr, "qwen3_omni_vk.h does not match the library (%u != %zu)\n", (unsigned)mp.struct_size,
                sizeof mp);
        return 1;
    }
    mp.device = chosen;
    mp.ctx_size = 512;
    mp.progress_callback = on_progress;
    qwen3_omni_model *model = NULL;
    CHECK(qwen3_omni_model_load(path, &mp, &model));
    qwen3_omni_model_info info;
    CHECK(qwen3_omni_model_get_info(model, &info));
    fprintf(stderr, "model: %s on %s, %u layers, context %u\n", path, info.device_name, (unsigned)info.n_layers,
            (unsigned)info.ctx_size);

    qwen3_omni_session_params sp = qwen3_omni_session_default_params();
    sp.system_prompt = "You are a helpful assistant.";
    sp.sampling.seed = 42;
    sp.speech.seed = 42;
    sp.speech.max_frames = (uint32_t)(max_frames > 0 ? max_frames : 1);
    qwen3_omni_session *session = NULL;
    CHECK(qwen3_omni_session_new(model, &sp, &session));

    /* The first answer is spoken (voices: "ethan", "chelsie", "aiden"). */
    CHECK(qwen3_omni_session_set_voice(session, "Chelsie"));
    if (ask(session, NULL, question, max_tokens, reply_wav)) return 1;
    if (ask(session, NULL, "And of Germany?", max_tokens, NULL)) return 1;
    if (wav && ask(session, wav, "What is said in this recording?", max_tokens, NULL)) return 1;

    uint32_t used = 0, size = 0;
    CHECK(qwen3_omni_session_context(session, &used, &size));
    fprintf(stderr, "context: %u of %u positions\n", (unsigned)used, (unsigned)size);
    CHECK(qwen3_omni_model_get_info(model, &info));
    CHECK(qwen3_omni_session_free(session));
    CHECK(qwen3_omni_model_free(model));
    CHECK(qwen3_omni_log_set(NULL, 0, NULL));
    if (info.validation_messages) {
        fprintf(stderr, "%llu Vulkan validation messages\n", (unsigned long long)info.validation_messages);
        return 2;
    }
    return 0;
}
