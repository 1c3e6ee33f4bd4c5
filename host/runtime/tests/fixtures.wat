;; A hand-written component of the `validator` world used to test what the reference plugin cannot
;; show: `check-upload` counts its calls in a global and rejects with "first call" only on the
;; first call of an instance (so a reused instance would say "state leaked"); `check-head` loops
;; forever (to hit the time limit).
(component
  (core module $m
    (memory (export "memory") 1)
    (global $calls (mut i32) (i32.const 0))
    (global $heap (mut i32) (i32.const 1024))
    (data (i32.const 100) "first call")
    (data (i32.const 200) "state leaked")
    ;; A bump allocator is enough for the few arguments the host lowers into this instance.
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
      (global.set $heap (i32.add (local.get $p) (local.get 3)))
      (local.get $p))
    ;; upload-info flattens to 14 core values; the verdict is returned through memory at 0:
    ;; case (u8) at 0, status (u16) at 4, reason pointer at 8 and length at 12.
    (func (export "check-upload")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32) (result i32)
      (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
      (i32.store8 (i32.const 0) (i32.const 1))
      (i32.store16 (i32.const 4) (i32.const 409))
      (if (i32.eq (global.get $calls) (i32.const 1))
        (then (i32.store (i32.const 8) (i32.const 100)) (i32.store (i32.const 12) (i32.const 10)))
        (else (i32.store (i32.const 8) (i32.const 200)) (i32.store (i32.const 12) (i32.const 12))))
      (i32.const 0))
    (func (export "check-head")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (loop $forever (br $forever))
      (i32.const 0))
  )
  (core instance $i (instantiate $m))

  (type $rejection' (record (field "status" u16) (field "reason" string)))
  (export $rejection "rejection" (type $rejection'))
  (type $verdict' (variant (case "accept") (case "reject" $rejection)))
  (export $verdict "verdict" (type $verdict'))
  (type $info' (record
    (field "tenant" string)
    (field "video-id" string)
    (field "filename" (option string))
    (field "declared-size" (option u64))
    (field "content-type" (option string))
    (field "metadata" (list (tuple string string)))))
  (export $info "upload-info" (type $info'))

  (func $check-upload (param "info" $info) (result $verdict)
    (canon lift (core func $i "check-upload") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (export "check-upload" (func $check-upload))
  (func $check-head (param "info" $info) (param "head" (list u8)) (result $verdict)
    (canon lift (core func $i "check-head") (memory (core memory $i "memory")) (realloc (core func $i "cabi_realloc"))))
  (export "check-head" (func $check-head))
)
