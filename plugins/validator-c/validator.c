// Reference validator plugin in C (world `validator` of `mediahost:plugin`): the same decisions,
// reasons and log lines as the Rust reference validator (plugins/validator), so an operator can
// swap one for the other. Built with the C SDK's tool:
//
//   cargo run -p mediahost-plugin-c -- build --world validator -o validator_c.wasm validator.c
//
// Settings (manifest `[config]` defaults, overridable per deployment):
// - `max_size`: largest declared size in bytes (`_` separators allowed); empty means no limit.
// - `allowed_extensions`: comma-separated, case-insensitive; empty means any.
// - `sniff`: "true" makes `check-head` reject bytes that are no known media container.
// A malformed setting is logged and the call traps: the host reports a plugin failure.
//
// Every call runs in a fresh instance, but the code still frees what it allocates so that a
// long-lived caller would not leak.

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validator.h"

// HTTP status of every rejection: the request is well-formed, its content is not acceptable.
#define STATUS 422
#define MAX_EXTENSIONS 64

// A growable, NUL-terminated text buffer.
typedef struct {
  char *ptr;
  size_t len;
  size_t cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1) cap *= 2;
  b->ptr = realloc(b->ptr, cap);
  if (!b->ptr) abort();
  b->cap = cap;
}

static void buf_put(buf_t *b, const char *s, size_t n) {
  buf_reserve(b, n);
  memcpy(b->ptr + b->len, s, n);
  b->len += n;
  b->ptr[b->len] = 0;
}

static void buf_puts(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_printf(buf_t *b, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(NULL, 0, fmt, args);
  va_end(args);
  buf_reserve(b, (size_t)n);
  va_start(args, fmt);
  vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, args);
  va_end(args);
  b->len += (size_t)n;
}

// Appends `s` quoted and escaped the way Rust's `{:?}` prints a string, so reasons match the
// Rust validator's byte for byte.
static void buf_put_debug(buf_t *b, const char *s, size_t n) {
  buf_puts(b, "\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    switch (c) {
      case '"': buf_puts(b, "\\\""); break;
      case '\\': buf_puts(b, "\\\\"); break;
      case '\n': buf_puts(b, "\\n"); break;
      case '\r': buf_puts(b, "\\r"); break;
      case '\t': buf_puts(b, "\\t"); break;
      case 0: buf_puts(b, "\\0"); break;
      default:
        if (c < 0x20 || c == 0x7f) {
          buf_printf(b, "\\u{%x}", c);
        } else {
          buf_put(b, (const char *)&c, 1);
        }
    }
  }
  buf_puts(b, "\"");
}

static bool is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

// A borrowed slice of text.
typedef struct {
  const char *ptr;
  size_t len;
} str_t;

static str_t trim(str_t s) {
  while (s.len && is_space((unsigned char)s.ptr[0])) s.ptr++, s.len--;
  while (s.len && is_space((unsigned char)s.ptr[s.len - 1])) s.len--;
  return s;
}

static bool str_eq(str_t s, const char *lit) {
  return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

static void log_line(mediahost_plugin_log_level_t level, const buf_t *text) {
  validator_string_t message = {(uint8_t *)text->ptr, text->len};
  mediahost_plugin_log_log(level, &message);
}

// The plugin's settings, read once per call from the `config` import.
typedef struct {
  bool has_max_size;
  uint64_t max_size;
  // Lower-case, without the leading dots; owned copies.
  char *extensions[MAX_EXTENSIONS];
  size_t extension_count;
  bool sniff;
} settings_t;

static void settings_free(settings_t *s) {
  for (size_t i = 0; i < s->extension_count; i++) free(s->extensions[i]);
}

// Looks `key` up; `*value` is set (trimmed, owned by `*owner`) only when present and non-blank.
static bool setting(const char *key, validator_string_t *owner, str_t *value) {
  validator_string_t k;
  validator_string_set(&k, key);
  if (!mediahost_plugin_config_get(&k, owner)) return false;
  *value = trim((str_t){(const char *)owner->ptr, owner->len});
  if (value->len == 0) {
    validator_string_free(owner);
    return false;
  }
  return true;
}

// Logs the error and traps, like the Rust plugin's panic: guessing would silently change what
// gets accepted.
static void invalid_configuration(buf_t *error) {
  buf_t line = {0};
  buf_printf(&line, "invalid configuration: %s", error->ptr);
  log_line(MEDIAHOST_PLUGIN_LOG_LEVEL_ERROR, &line);
  fputs(line.ptr, stderr);
  __builtin_trap();
}

// Rust's `u64::from_str`: an optional `+`, then at least one digit, no overflow.
static bool parse_u64(const char *s, size_t n, uint64_t *out) {
  size_t i = 0;
  if (n && s[0] == '+') i = 1;
  if (i == n) return false;
  uint64_t v = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

static settings_t read_settings(void) {
  settings_t s = {0};
  validator_string_t owner;
  str_t value;

  if (setting("max_size", &owner, &value)) {
    buf_t digits = {0};
    buf_puts(&digits, "");
    for (size_t i = 0; i < value.len; i++) {
      if (value.ptr[i] != '_') buf_put(&digits, &value.ptr[i], 1);
    }
    if (!parse_u64(digits.ptr, digits.len, &s.max_size)) {
      buf_t e = {0};
      buf_puts(&e, "max_size ");
      buf_put_debug(&e, value.ptr, value.len);
      buf_puts(&e, " is not a number of bytes");
      invalid_configuration(&e);
    }
    s.has_max_size = true;
    free(digits.ptr);
    validator_string_free(&owner);
  }

  if (setting("allowed_extensions", &owner, &value)) {
    size_t start = 0;
    for (size_t i = 0; i <= value.len; i++) {
      if (i < value.len && value.ptr[i] != ',') continue;
      str_t ext = trim((str_t){value.ptr + start, i - start});
      while (ext.len && ext.ptr[0] == '.') ext.ptr++, ext.len--;
      if (ext.len && s.extension_count < MAX_EXTENSIONS) {
        char *copy = malloc(ext.len + 1);
        if (!copy) abort();
        for (size_t j = 0; j < ext.len; j++) copy[j] = lower(ext.ptr[j]);
        copy[ext.len] = 0;
        s.extensions[s.extension_count++] = copy;
      }
      start = i + 1;
    }
    validator_string_free(&owner);
  }

  if (setting("sniff", &owner, &value)) {
    if (str_eq(value, "true")) {
      s.sniff = true;
    } else if (!str_eq(value, "false")) {
      buf_t e = {0};
      buf_puts(&e, "sniff ");
      buf_put_debug(&e, value.ptr, value.len);
      buf_puts(&e, " is neither \"true\" nor \"false\"");
      invalid_configuration(&e);
    }
    validator_string_free(&owner);
  }
  return s;
}

// The lower-cased extension of the last path component of `name`, or NULL when it has none.
static char *extension(const char *name, size_t n) {
  size_t base = 0;
  for (size_t i = 0; i < n; i++) {
    if (name[i] == '/' || name[i] == '\\') base = i + 1;
  }
  size_t dot = n;
  for (size_t i = base; i < n; i++) {
    if (name[i] == '.') dot = i;
  }
  if (dot == n || dot + 1 == n) return NULL;
  size_t len = n - dot - 1;
  char *ext = malloc(len + 1);
  if (!ext) abort();
  for (size_t i = 0; i < len; i++) ext[i] = lower(name[dot + 1 + i]);
  ext[len] = 0;
  return ext;
}

// Checks the declared size and the file name's extension. Returns false with the reason in
// `reason` when the upload is refused.
static bool check_upload(const settings_t *s, const validator_upload_info_t *info, buf_t *reason) {
  if (info->declared_size.is_some && s->has_max_size && info->declared_size.val > s->max_size) {
    buf_printf(reason, "file is %llu bytes; the limit is %llu bytes",
               (unsigned long long)info->declared_size.val, (unsigned long long)s->max_size);
    return false;
  }
  if (!info->filename.is_some || s->extension_count == 0) return true;
  const char *name = (const char *)info->filename.val.ptr;
  size_t name_len = info->filename.val.len;
  buf_t allowed = {0};
  for (size_t i = 0; i < s->extension_count; i++) {
    if (i) buf_puts(&allowed, ", ");
    buf_puts(&allowed, s->extensions[i]);
  }
  char *ext = extension(name, name_len);
  bool ok = false;
  if (!ext) {
    buf_puts(reason, "file name ");
    buf_put_debug(reason, name, name_len);
    buf_printf(reason, " has no extension; allowed extensions: %s", allowed.ptr);
  } else {
    for (size_t i = 0; i < s->extension_count; i++) {
      if (strcmp(ext, s->extensions[i]) == 0) ok = true;
    }
    if (!ok) {
      buf_printf(reason, "file extension \".%s\" is not allowed; allowed extensions: %s", ext,
                 allowed.ptr);
    }
  }
  free(ext);
  free(allowed.ptr);
  return ok;
}

static bool at(const uint8_t *head, size_t n, size_t offset, const void *magic, size_t len) {
  return offset + len <= n && memcmp(head + offset, magic, len) == 0;
}

// Whether `head` starts with the signature of a known media container.
static bool sniff(const uint8_t *head, size_t n) {
  static const char *const quicktime_atoms[] = {"moov", "mdat", "wide", "free", "skip"};
  if (at(head, n, 4, "ftyp", 4)) return true;
  // Old QuickTime files may start with another top-level atom instead of `ftyp`.
  for (size_t i = 0; i < 5; i++) {
    if (at(head, n, 4, quicktime_atoms[i], 4)) return true;
  }
  if (at(head, n, 0, "\x1a\x45\xdf\xa3", 4)) return true;  // Matroska/WebM
  // MPEG-TS: one sync byte is too weak a signal; two packets apart it is not a coincidence.
  if (at(head, n, 0, "\x47", 1) && at(head, n, 188, "\x47", 1)) return true;
  // M2TS: 192-byte packets, a 4-byte timestamp before each sync byte.
  if (at(head, n, 4, "\x47", 1) && at(head, n, 196, "\x47", 1)) return true;
  if (at(head, n, 0, "RIFF", 4) && at(head, n, 8, "AVI ", 4)) return true;
  if (at(head, n, 0, "FLV\x01", 4)) return true;
  if (at(head, n, 0, "OggS", 4)) return true;
  if (at(head, n, 0, "\x00\x00\x01\xba", 4)) return true;  // MPEG-PS
  return false;
}

static bool check_head(const settings_t *s, const uint8_t *head, size_t n, buf_t *reason) {
  if (!s->sniff || sniff(head, n)) return true;
  if (n == 0) {
    buf_puts(reason, "the upload is empty");
  } else {
    buf_puts(reason,
             "the file does not look like a video: its first bytes match no known container "
             "(MP4/MOV, Matroska/WebM, MPEG-TS, AVI, FLV, Ogg, MPEG-PS)");
  }
  return false;
}

// Turns an outcome into the verdict, logging rejections as the Rust plugin does.
static void verdict(const validator_upload_info_t *info, bool ok, buf_t *reason,
                    validator_verdict_t *ret) {
  if (ok) {
    ret->tag = MEDIAHOST_PLUGIN_TYPES_VERDICT_ACCEPT;
    free(reason->ptr);
    return;
  }
  buf_t line = {0};
  buf_puts(&line, "rejected upload of video ");
  buf_put(&line, (const char *)info->video_id.ptr, info->video_id.len);
  buf_puts(&line, " (tenant ");
  buf_put(&line, (const char *)info->tenant.ptr, info->tenant.len);
  buf_puts(&line, "): ");
  buf_put(&line, reason->ptr, reason->len);
  log_line(MEDIAHOST_PLUGIN_LOG_LEVEL_INFO, &line);
  free(line.ptr);
  ret->tag = MEDIAHOST_PLUGIN_TYPES_VERDICT_REJECT;
  ret->val.reject.status = STATUS;
  // The host frees the returned reason after the call (post-return).
  ret->val.reject.reason = (validator_string_t){(uint8_t *)reason->ptr, reason->len};
}

void exports_validator_check_upload(validator_upload_info_t *info, validator_verdict_t *ret) {
  settings_t s = read_settings();
  buf_t reason = {0};
  bool ok = check_upload(&s, info, &reason);
  verdict(info, ok, &reason, ret);
  settings_free(&s);
  validator_upload_info_free(info);
}

void exports_validator_check_head(validator_upload_info_t *info, validator_list_u8_t *head,
                                  validator_verdict_t *ret) {
  settings_t s = read_settings();
  buf_t reason = {0};
  bool ok = check_head(&s, head->ptr, head->len, &reason);
  verdict(info, ok, &reason, ret);
  settings_free(&s);
  validator_list_u8_free(head);
  validator_upload_info_free(info);
}
