;; Both exports spin forever without touching memory: only the epoch deadline (wall time) or the
;; fuel budget can stop them. Used with a short timeout (→ Timeout) and with a small fuel budget
;; under a long timeout (→ OutOfFuel).
(module
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
  (func (export "check-upload")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0))
  (func (export "check-head")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
    ;; A counted loop this time, long enough (2^32 iterations) that the limits end it first.
    (local $n i32)
    (local.set $n (i32.const -1))
    (loop $spin
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $spin (local.get $n)))
    (i32.const 0))
)
