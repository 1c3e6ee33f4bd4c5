;; Two ways to ask for a huge table.
;; check-upload: grow by 1000 elements at a time until `table.grow` fails (-1), then trap with
;;   `unreachable` (the guest's own reaction to a failed allocation).
;; check-head: a single grow by 1,000,000 elements.
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
  (func (export "check-upload")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32) (result i32)
    (loop $more
      (if (i32.eq (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1))
        (then unreachable))
      (br $more))
    (i32.const 0))
  (func (export "check-head")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (if (i32.eq (table.grow $t (ref.null func) (i32.const 1000000)) (i32.const -1))
      (then unreachable))
    (i32.store8 (i32.const 0) (i32.const 0))
    (i32.const 0))
)
