;; Asks for 64 MiB of linear memory up front, in its declaration: the memory limit must apply at
;; instantiation, before any guest code runs.
(module
  (memory (export "memory") 1024)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
  (func (export "check-upload")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32) (result i32)
    (i32.store8 (i32.const 0) (i32.const 0))
    (i32.const 0))
  (func (export "check-head")
    (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (i32.store8 (i32.const 0) (i32.const 0))
    (i32.const 0))
)
