;; A whole component (not just a core module) because it imports WASI: it asks the host for what
;; a plugin must not have and reports what it got as its rejection reason, e.g.
;;   "dirs=0 env=0 tcp=denied:1 clock=0"
;; - dirs:  how many preopened directories `wasi:filesystem/preopens.get-directories` returned
;;          (no directory means no file can be opened at all),
;; - env:   how many variables `wasi:cli/environment.get-environment` returned,
;; - tcp:   whether `wasi:sockets/tcp-create-socket.create-tcp-socket(ipv4)` gave a socket
;;          ("granted") or an error code ("denied:<index>", 1 is `access-denied`),
;; - clock: the seconds `wasi:clocks/wall-clock.now` returned (the host freezes it at 0).
;; It imports WASI 0.2.0, as many guest toolchains do; the host provides a later 0.2.x.
(component $C
  ;; --- imports ---------------------------------------------------------------------------
  (import "wasi:filesystem/types@0.2.0" (instance $fs-types
    (export "descriptor" (type (sub resource)))))
  (alias export $fs-types "descriptor" (type $descriptor))
  (import "wasi:filesystem/preopens@0.2.0" (instance $preopens
    (alias outer $C $descriptor (type $d0))
    (export "descriptor" (type $d (eq $d0)))
    (export "get-directories" (func (result (list (tuple (own $d) string)))))))

  (import "wasi:cli/environment@0.2.0" (instance $environment
    (export "get-environment" (func (result (list (tuple string string)))))))

  (import "wasi:clocks/wall-clock@0.2.0" (instance $wall-clock
    (type $dt0 (record (field "seconds" u64) (field "nanoseconds" u32)))
    (export "datetime" (type $dt (eq $dt0)))
    (export "now" (func (result $dt)))))

  (import "wasi:sockets/network@0.2.0" (instance $network
    (type $ec0 (enum "unknown" "access-denied" "not-supported" "invalid-argument"
      "out-of-memory" "timeout" "concurrency-conflict" "not-in-progress" "would-block"
      "invalid-state" "new-socket-limit" "address-not-bindable" "address-in-use"
      "remote-unreachable" "connection-refused" "connection-reset" "connection-aborted"
      "datagram-too-large" "name-unresolvable" "temporary-resolver-failure"
      "permanent-resolver-failure"))
    (export "error-code" (type (eq $ec0)))
    (type $af0 (enum "ipv4" "ipv6"))
    (export "ip-address-family" (type (eq $af0)))))
  (alias export $network "error-code" (type $error-code))
  (alias export $network "ip-address-family" (type $address-family))
  (import "wasi:sockets/tcp@0.2.0" (instance $tcp
    (export "tcp-socket" (type (sub resource)))))
  (alias export $tcp "tcp-socket" (type $tcp-socket))
  (import "wasi:sockets/tcp-create-socket@0.2.0" (instance $tcp-create-socket
    (alias outer $C $error-code (type $ec0))
    (export "error-code" (type $ec (eq $ec0)))
    (alias outer $C $address-family (type $af0))
    (export "ip-address-family" (type $af (eq $af0)))
    (alias outer $C $tcp-socket (type $ts0))
    (export "tcp-socket" (type $ts (eq $ts0)))
    (export "create-tcp-socket"
      (func (param "address-family" $af) (result (result (own $ts) (error $ec)))))))

  ;; --- memory the host lowers into --------------------------------------------------------
  (core module $mem-module
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 8192))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
      (global.set $heap (i32.add (local.get $p) (local.get 3)))
      (local.get $p)))
  (core instance $mem (instantiate $mem-module))

  (core func $get-directories (canon lower (func $preopens "get-directories")
    (memory (core memory $mem "memory")) (realloc (core func $mem "cabi_realloc"))))
  (core func $get-environment (canon lower (func $environment "get-environment")
    (memory (core memory $mem "memory")) (realloc (core func $mem "cabi_realloc"))))
  (core func $now (canon lower (func $wall-clock "now") (memory (core memory $mem "memory"))))
  (core func $create-tcp-socket (canon lower (func $tcp-create-socket "create-tcp-socket")
    (memory (core memory $mem "memory"))))

  ;; --- the plugin -------------------------------------------------------------------------
  (core module $probe
    (import "wasi" "get-directories" (func $get-directories (param i32)))
    (import "wasi" "get-environment" (func $get-environment (param i32)))
    (import "wasi" "now" (func $now (param i32)))
    (import "wasi" "create-tcp-socket" (func $create-tcp-socket (param i32 i32)))
    (import "mem" "memory" (memory 1))
    ;; Scratch for results at 16..64; text pieces at 100..; the reason is built at 1024.
    (data (i32.const 100) "dirs=")
    (data (i32.const 110) " env=")
    (data (i32.const 120) " tcp=granted")
    (data (i32.const 140) " tcp=denied:")
    (data (i32.const 160) " clock=")

    ;; Copies `len` bytes from `src` to `dst` and returns the end of the copy.
    (func $put (param $dst i32) (param $src i32) (param $len i32) (result i32)
      (memory.copy (local.get $dst) (local.get $src) (local.get $len))
      (i32.add (local.get $dst) (local.get $len)))

    ;; Writes `n` in decimal at `dst` and returns the end.
    (func $itoa (param $dst i32) (param $n i64) (result i32)
      (local $digits i32) (local $m i64) (local $end i32)
      (local.set $m (local.get $n))
      (loop $count
        (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
        (local.set $m (i64.div_u (local.get $m) (i64.const 10)))
        (br_if $count (i64.ne (local.get $m) (i64.const 0))))
      (local.set $end (i32.add (local.get $dst) (local.get $digits)))
      (local.set $dst (local.get $end))
      (loop $write
        (local.set $dst (i32.sub (local.get $dst) (i32.const 1)))
        (i32.store8 (local.get $dst)
          (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
        (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
        (br_if $write (i64.ne (local.get $n) (i64.const 0))))
      (local.get $end))

    (func (export "check-upload")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32) (result i32)
      (local $p i32)
      ;; list<tuple<own<descriptor>, string>> and list<tuple<string, string>>: pointer, length.
      (call $get-directories (i32.const 16))
      (call $get-environment (i32.const 24))
      ;; datetime: seconds (u64) at 32, nanoseconds at 40.
      (call $now (i32.const 32))
      ;; result<own<tcp-socket>, error-code>: case at 48, payload at 52. 0 is ipv4.
      (call $create-tcp-socket (i32.const 0) (i32.const 48))

      (local.set $p (call $put (i32.const 1024) (i32.const 100) (i32.const 5)))
      (local.set $p (call $itoa (local.get $p) (i64.extend_i32_u (i32.load (i32.const 20)))))
      (local.set $p (call $put (local.get $p) (i32.const 110) (i32.const 5)))
      (local.set $p (call $itoa (local.get $p) (i64.extend_i32_u (i32.load (i32.const 28)))))
      (if (i32.eqz (i32.load8_u (i32.const 48)))
        (then (local.set $p (call $put (local.get $p) (i32.const 120) (i32.const 12))))
        (else
          (local.set $p (call $put (local.get $p) (i32.const 140) (i32.const 12)))
          (local.set $p (call $itoa (local.get $p) (i64.extend_i32_u (i32.load8_u (i32.const 52)))))))
      (local.set $p (call $put (local.get $p) (i32.const 160) (i32.const 7)))
      (local.set $p (call $itoa (local.get $p) (i64.load (i32.const 32))))

      ;; The verdict: reject (case 1), status 403, reason at 1024.
      (i32.store8 (i32.const 0) (i32.const 1))
      (i32.store16 (i32.const 4) (i32.const 403))
      (i32.store (i32.const 8) (i32.const 1024))
      (i32.store (i32.const 12) (i32.sub (local.get $p) (i32.const 1024)))
      (i32.const 0))

    (func (export "check-head")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (i32.store8 (i32.const 0) (i32.const 0))
      (i32.const 0)))

  (core instance $i (instantiate $probe
    (with "wasi" (instance
      (export "get-directories" (func $get-directories))
      (export "get-environment" (func $get-environment))
      (export "now" (func $now))
      (export "create-tcp-socket" (func $create-tcp-socket))))
    (with "mem" (instance $mem))))

  ;; --- the validator world's exports -----------------------------------------------------
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
    (canon lift (core func $i "check-upload")
      (memory (core memory $mem "memory")) (realloc (core func $mem "cabi_realloc"))))
  (export "check-upload" (func $check-upload))
  (func $check-head (param "info" $info) (param "head" (list u8)) (result $verdict)
    (canon lift (core func $i "check-head")
      (memory (core memory $mem "memory")) (realloc (core func $mem "cabi_realloc"))))
  (export "check-head" (func $check-head))
)
