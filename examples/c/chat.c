/*
 * chat.c: embed qwen3-omni-vk in a C program through its static library.
 *
 * Loads a model, lists the Vulkan devices, asks a question by text and prints the reply as it
 * streams, then asks a follow-up in the same session (the history stays in the KV cache), and,
 * given a WAV file, asks about the recording.
 *
 * Build (from the repository root, after `cargo build -p qwen3-omni`):
 *   cc -std=c11 -Wall -Iinclude examples/c/chat.c target/debug/libqwen3_omni.a \
 *      -ldl -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o chat
 * The system libraries are what
 *   cargo rustc -p qwen3-omni --lib --crate-type staticlib -- --print native-static-libs
 * prints for your platform. Run: ./chat [MODEL.gguf] [QUESTION] [MAX_TOKENS] [RECORDING.wav]
 * (default model: models/demo.gguf, which `qwen3-omni-vk chat` builds on first use).
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

struct reply {
    size_t pieces;
    size_t bytes;
};

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

static void on_log(int32_t level, const char *text, void *user_data) {
    (void)user_data;
    fprintf(stderr, "[log %d] %s\n", (int)level, text);
}

/* One turn: `wav` (may be NULL) and then `question`, as one user message. */
static int ask(qwen3_omni_session *session, const char *wav, const char *question, int max_tokens) {
    struct reply r = {0, 0};
    qwen3_omni_generate_params gp = qwen3_omni_generate_default_params();
    qwen3_omni_generate_result res;
    gp.max_tokens = max_tokens;
    gp.text_callback = on_text;
    gp.user_data = &r;
    if (wav) {
        printf("> [%s]\n", wav);
        CHECK(qwen3_omni_session_add_audio_file(session, wav));
    }
    printf("> %s\n", question);
    CHECK(qwen3_omni_session_add_text(session, question));
    CHECK(qwen3_omni_session_generate(session, &gp, &res));
    printf("\n");
    fprintf(stderr, "[%d prompt tokens, %d reply tokens, stop reason %d, %.1f ms prompt, %.1f ms reply]\n",
            (int)res.n_prompt_tokens, (int)res.n_tokens, (int)res.stop_reason, res.prompt_ms, res.generate_ms);
    if (res.n_tokens <= 0 || r.pieces == 0) {
        fprintf(stderr, "no text was streamed\n");
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "models/demo.gguf";
    const char *question = argc > 2 ? argv[2] : "What is the capital of France?";
    int max_tokens = argc > 3 ? atoi(argv[3]) : 16;
    const char *wav = argc > 4 ? argv[4] : NULL;

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
    qwen3_omni_session *session = NULL;
    CHECK(qwen3_omni_session_new(model, &sp, &session));

    if (ask(session, NULL, question, max_tokens)) return 1;
    if (ask(session, NULL, "And of Germany?", max_tokens)) return 1;
    if (wav && ask(session, wav, "What is said in this recording?", max_tokens)) return 1;

    /* Speech out has its API but is not in this build yet. */
    qwen3_omni_status s = qwen3_omni_session_set_voice(session, "Ethan");
    fprintf(stderr, "speech output: %s (%s)\n", qwen3_omni_status_string(s), qwen3_omni_last_error());
    if (s != QWEN3_OMNI_ERR_NOT_AVAILABLE && s != QWEN3_OMNI_OK) return 1;

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
