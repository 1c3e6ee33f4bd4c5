;; Rejections whose reason string lies about itself. check-upload picks a mode from the declared
;; size it is given (upload-info's `declared-size`, flattened to a discriminant and an i64):
;;   1: reason at 0 claiming 1 GiB (far past the 64 KiB memory),
;;   2: reason pointer near 4 GiB, so pointer + length wraps around,
;;   3: a legitimate 8 MiB reason of 'A's, inside a memory grown to hold it,
;;   4: a 2-byte reason that is not UTF-8,
;;   5: a verdict discriminant (7) that names no case.
;; The verdict is returned through memory at 0: case (u8) at 0, status (u16) at 4, reason
;; pointer at 8 and length at 12.
(module
  (memory (export "memory") 1)
  (data (i32.const 100) "\ff\fe")
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
  (func (export "check-upload")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32) (result i32)
    (local $mode i64)
    (local.set $mode (local.get 8))
    (i32.store8 (i32.const 0) (i32.const 1))
    (i32.store16 (i32.const 4) (i32.const 413))
    (if (i64.eq (local.get $mode) (i64.const 1))
      (then
        (i32.store (i32.const 8) (i32.const 0))
        (i32.store (i32.const 12) (i32.const 0x40000000))))
    (if (i64.eq (local.get $mode) (i64.const 2))
      (then
        (i32.store (i32.const 8) (i32.const 0xfffffff0))
        (i32.store (i32.const 12) (i32.const 64))))
    (if (i64.eq (local.get $mode) (i64.const 3))
      (then
        ;; 1 page + 144 pages = 9 MiB + 64 KiB; the reason lives at [64 KiB, 64 KiB + 8 MiB).
        (if (i32.eq (memory.grow (i32.const 144)) (i32.const -1)) (then unreachable))
        (memory.fill (i32.const 65536) (i32.const 65) (i32.const 0x800000))
        (i32.store (i32.const 8) (i32.const 65536))
        (i32.store (i32.const 12) (i32.const 0x800000))))
    (if (i64.eq (local.get $mode) (i64.const 4))
      (then
        (i32.store (i32.const 8) (i32.const 100))
        (i32.store (i32.const 12) (i32.const 2))))
    (if (i64.eq (local.get $mode) (i64.const 5))
      (then (i32.store8 (i32.const 0) (i32.const 7))))
    (i32.const 0))
  (func (export "check-head")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (i32.store8 (i32.const 0) (i32.const 0))
    (i32.const 0))
)
