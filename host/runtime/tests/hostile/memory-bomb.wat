;; Two ways to ask for all the memory there is.
;; check-upload: grow 1 MiB at a time until `memory.grow` fails, then touch the last page it got;
;;   if the host ever lets the grow fail softly (-1) the guest gives up with `unreachable`.
;; check-head: a single grow by 65535 pages (~4 GiB), then write at the top of it.
(module
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
  (func (export "check-upload")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32) (result i32)
    (loop $more
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1))
        (then unreachable))
      ;; Use what was granted, so lazily committed pages become real.
      (i32.store (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 4)) (i32.const 1))
      (br $more))
    (i32.const 0))
  (func (export "check-head")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (if (i32.eq (memory.grow (i32.const 65535)) (i32.const -1))
      (then unreachable))
    (i32.store (i32.const -8) (i32.const 1))
    (i32.const 0))
)
