/*
 * palitra.pml -- Promela model of palitra's blocking-call protocols:
 *   the completion slot        include/palitra/detail/completion_slot.hpp
 *   the lifecycle gate (P1)    core/submission.hpp, Protocol 1
 *   the wake elision (P2)      core/submission.hpp, Protocol 2
 *   the MPSC queue             core/mpsc_queue.hpp
 *   the loop and shutdown      core/loop.cpp (run, drain_queue, accept,
 *                              publish, idle, begin_stop, try_finish_stop)
 * Names follow the C++ (slot_*, gate_*, W1/P1/A1, G1/G2/G3, S1/S2, W1-W3,
 * Q1/Q2). README.md has the full mapping table.
 *
 * Granularity: one Promela transition per atomic memory operation or
 * syscall (CAS, exchange, fetch_add, load, store, FUTEX_WAIT's
 * compare-and-sleep, FUTEX_WAKE, eventfd write/read, queue push/take).
 * Bookkeeping that only the acting thread sees (counters, frame flags, the
 * loop's registry, the construction of a call record before its push) is
 * folded into the d_step of the atomic op next to it. Three pairs of
 * adjacent loads on the loop thread are one step each; README.md ("Merged
 * loads") shows why no behaviour is lost. The model is sequentially
 * consistent: it checks the protocol logic, not the memory orders
 * (README.md, "What is abstracted away"; BUG_RELAXED).
 *
 * Build flags (spin -a -D...):
 *   NC, K           callers, calls per caller (defaults 2, 2; NC <= 3)
 *   SPURIOUS        FUTEX_WAIT may return with nobody waking it (EINTR...)
 *   BUG_NO_GATE     mutant: G1 reads the state without counting producers
 *   BUG_TRUST_WAKE  mutant: the caller returns on a wake-up without A1
 *   BUG_WAKE_ORDER  mutant: idle re-checks queue and gate before W1
 *   BUG_RELAXED     not a mutant of the code but of the machine: the
 *                   store->load reordering that arm_for_sleep's acquire
 *                   gate load permits (see README.md)
 */

#ifndef NC
#define NC 2
#endif
#ifndef K
#define K 2
#endif
#if NC < 1 || NC > 3 || K < 1
#error "palitra.pml: 1 <= NC <= 3 and K >= 1"
#endif

/* completion_slot.hpp */
#define slot_pending 0
#define slot_done    1
#define slot_waiting 2

/* submission.hpp, Protocol 1 (the state bits of gate_; `producers` is the
   count in bits 2-) */
#define gate_running  0
#define gate_stopping 1
#define gate_stopped  2

/* What the caller gets back. */
#define NONE   0 /* nothing published yet */
#define OK     1 /* call_outcome value or failed: one protocol path */
#define TMO    2 /* call_outcome cancelled, end_reason timeout */
#define SHUT   3 /* end_reason close: cancelled by begin_stop, or accepted by
                    G1 and rejected at the pop (call_outcome rejected) */
#define CLOSED 4 /* runner_closed_error: rejected by G1, never pushed */

/* ---- per caller thread: ONE slot, reused by its K calls (the call record sits
   at the same stack address every call, so a late FUTEX_WAKE for call k
   can hit call k+1) */
byte st[NC];        /* basic_completion_slot::state_ */
byte outcome[NC];   /* the result the caller reads after A1 */
bool sleeping[NC];  /* the futex wait queue of that address */
bool frame[NC];     /* the loop may still use the call's frame and call record
                       (set at construction; cleared by P1, or by the
                       caller at a G1 rejection); the caller may free them
                       only when it is 0 */
bool returned[NC];  /* the caller left run() */

/* ---- basic_submission */
byte gstate = gate_running; /* gate_ & gate_state_mask */
byte producers = 0;         /* gate_ / gate_one */
bool armed = 0;             /* armed_ */
bool evfd = 0;              /* the reactor's eventfd is readable */
chan q = [NC] of { byte };  /* basic_mpsc_queue: at most one node per caller */

/* ---- accounting. Per call (always): pushed[c] is set by G2, P1 requires
   it, and the return checks "pushed and published exactly once, or
   rejected by G1 and never pushed". Summed over the NC*K calls that is
   submitted == completed + cancelled and submitted + rejected == NC*K.
   -DTOTALS also keeps the runner_stats-style totals and asserts the two
   equations at the end; the totals remember history (which calls timed
   out), which multiplies the states by about 3, so they are soak-only. */
bool pushed[NC];
byte nret = 0;      /* calls returned to their callers (= sum of k) */
#ifdef TOTALS
byte submitted = 0; /* passed G1 and pushed */
byte completed = 0; /* published OK */
byte cancelled = 0; /* published TMO or SHUT */
byte rejected  = 0; /* CLOSED at G1 */
#define COUNT(x) x++
#else
#define COUNT(x) skip
#endif
bool loop_exited = 0; /* loop::run returned (the thread may be joined) */

/* W2 (wake_if_armed): seq_cst load; exchange(0); the winner writes the
   eventfd. Submission I2: no write after the loop thread exited. */
inline wake_if_armed(wk) {
  if
  :: armed ->
     d_step { wk = armed; armed = 0 };
     if
     :: wk -> d_step { assert(!loop_exited); evfd = 1; wk = 0 }
     :: else -> skip
     fi
  :: else -> skip
  fi
}

/* S1 (request_stop): CAS running -> stopping, then a wake through the
   counted producer path (fetch_add, W2, fetch_sub). */
inline request_stop(won, wk) {
  d_step {
    if
    :: gstate == gate_running -> gstate = gate_stopping; won = 1
    :: else -> won = 0
    fi
  };
  if
  :: won ->
     producers++;
     wake_if_armed(wk);
     producers--
  :: else -> skip
  fi
}

/* ------------------------------------------------------------------------
 * Caller(c): runner::run -> submit_root -> completion_slot::wait, K times.
 */

/* The caller returns (folded into the A1 load that saw slot_done, the last
   protocol step of the call): exactly one outcome, and the loop no longer
   owns the frame (I2, I3). */
#define RETURN \
  assert(outcome[c] != NONE); \
  assert(!frame[c]); \
  assert((outcome[c] == CLOSED) == !pushed[c]); \
  returned[c] = 1; nret++; k++; \
  outcome[c] = NONE; pushed[c] = 0 /* the call record is gone */

#ifdef BUG_NO_GATE
#define G1_COUNT   skip  /* mutant: the state is read, producers not counted */
#define G1_UNCOUNT skip
#else
#define G1_COUNT   producers++
#define G1_UNCOUNT producers--
#endif

proctype Caller(byte c) {
  byte k = 0;
  byte g, wk;
  do
  :: k == K -> break
  :: k < K ->
     /* G0: a relaxed read of the state before the count (submission.hpp).
        The fresh call record (at the same stack address every call:
        slot_pending, frame alive) is thread-local until the push, so its
        construction is folded in. */
     d_step {
       st[c] = slot_pending; outcome[c] = NONE; frame[c] = 1; returned[c] = 0;
       g = gstate
     };
     if
     :: g != gate_running ->
        /* G0 reject: the count is never touched; runner_closed_error */
        d_step { g = 0; outcome[c] = CLOSED; frame[c] = 0; COUNT(rejected); RETURN }
     :: else -> skip
     fi;
     if
     :: !returned[c] ->
     /* G1: fetch_add(gate_one), reading the state again. */
     d_step { g = gstate; G1_COUNT };
     if
     :: g != gate_running ->
        /* G1 reject: fetch_sub; runner_closed_error; the caller frees the
           frame */
        d_step { G1_UNCOUNT; g = 0; outcome[c] = CLOSED; frame[c] = 0; COUNT(rejected); RETURN }
     :: else ->
        d_step { q!c; pushed[c] = 1; COUNT(submitted) };               /* G2 / Q1: push */
        wake_if_armed(wk);                         /* W2 */
        G1_UNCOUNT;                                /* G3: fetch_sub(gate_one) */
        /* completion_slot::wait. Its is_done() and bounded yield phase
           are A1 loads that return on slot_done; they are left out: W1
           fails on slot_done and the A1 below returns, which reaches the
           same shared state. */
        /* W1 (announce_sleep): CAS pending -> waiting */
        d_step { if :: st[c] == slot_pending -> st[c] = slot_waiting :: else -> skip fi };
        do
        :: d_step { st[c] == slot_done; RETURN }; break        /* A1 */
        :: else ->
           /* address_wait(state_, slot_waiting): FUTEX_WAIT compares and
              sleeps atomically */
           d_step { if :: st[c] == slot_waiting -> sleeping[c] = 1 :: else -> skip fi };
           if
           :: !sleeping[c] -> skip                 /* woken (or EAGAIN) */
#ifdef SPURIOUS
           :: sleeping[c] -> sleeping[c] = 0       /* spurious return, EINTR */
#endif
           fi
#ifdef BUG_TRUST_WAKE
           ; d_step { RETURN }; break              /* mutant: no A1 re-check */
#endif
        od
     fi
     :: else -> skip                               /* rejected at G0 */
     fi
  od
}

/* ------------------------------------------------------------------------
 * Loop: loop::run on the runner's thread.
 */

/* publish(op) with P1 at the end: bookkeeping (registry, counters) folded
   into the exchange; exactly once, never after the caller returned, never
   on a frame the loop no longer owns. */
#define P1(o) \
  d_step { \
    assert(!returned[i] && outcome[i] == NONE && frame[i] && pushed[i]); \
    outcome[i] = o; frame[i] = 0; \
    if :: o == OK -> COUNT(completed) :: else -> COUNT(cancelled) fi; \
    reg = reg & ~(1 << i); \
    if :: ev == i + 1 -> ev = 0 :: else -> skip fi; \
    prev = st[i]; st[i] = slot_done \
  }

/* P1's FUTEX_WAKE, a separate step after the exchange: in the gap the
   caller can see slot_done, return, and start its next call on the same
   slot, which then receives this (stale) wake. */
#define WAKE \
  if \
  :: prev == slot_waiting -> d_step { sleeping[i] = 0; prev = slot_pending; i = 0 } \
  :: else -> i = 0 \
  fi

/* a started call ends: with a value (or user exception), a timeout (its
   timer), or, once begin_stop ran, cancelled by close. Cancellation and
   completion are serialized on the loop, so the race is a choice of
   exactly one outcome. The three take the same protocol path (P1) and
   differ only in the stats bucket, so the default build publishes OK
   before begin_stop and SHUT after it; -DTOTALS enumerates all three. */
#ifdef TOTALS
#define END_CALL \
  if \
  :: P1(OK) \
  :: P1(TMO) \
  :: stopping -> P1(SHUT) \
  fi; \
  WAKE
#else
#define END_CALL \
  if \
  :: !stopping -> P1(OK) \
  :: stopping -> P1(SHUT) \
  fi; \
  WAKE
#endif

/* accept() with stopping_ set: publish SHUT, lowest index first */
#define REJECT_BATCH \
  do \
  :: batch != 0 -> \
     d_step { \
       if :: batch & 1 -> i = 0 :: batch & 2 -> i = 1 :: else -> i = 2 fi; \
       batch = batch & ~(1 << i) \
     }; \
     P1(SHUT); \
     WAKE \
  :: else -> break \
  od

/* drain_queue / take_all (Q2): one exchange takes every node (the body of
   a d_step) */
#define TAKE_ALL \
    do \
    :: nempty(q) -> q?x; batch = batch | (1 << x) \
    :: empty(q) -> break \
    od; \
    x = 0

#ifdef BUG_RELAXED
#define GATE_CLOSED gs /* the value of the early load */
#else
#define GATE_CLOSED (!stopping && gstate != gate_running)
#endif

proctype Loop() {
  byte batch = 0; /* nodes taken by Q2, not yet dispatched */
  byte reg = 0;   /* started calls not yet published (registry_) */
  byte ev = 0;    /* i+1: the reactor returned for call i's timer or I/O */
  byte x, i, prev;
  bool stopping = 0; /* stopping_ */
  bool ok;
#ifdef BUG_RELAXED
  bool gs = 0; /* the gate was seen closed (by the early load) */
#endif
  do
  :: /* Top of loop::run, one step for two loads (see README, "Merged
        loads"): if (!stopping_ && !accepting()) begin_stop(), which
        delivers close to every started call (END_CALL may now pick SHUT);
        then drain_queue: Q2, and accept() starts each node... */
     d_step {
       if
       :: !stopping && gstate != gate_running -> stopping = 1
       :: else -> skip
       fi;
       TAKE_ALL;
       if
       :: !stopping -> reg = reg | batch; batch = 0
       :: else -> skip
       fi
     };
     REJECT_BATCH; /* ...or, once stopping_, publishes it rejected */
     /* run_ready + fire_timers: the call whose timer or I/O woke the
        reactor ends now */
     if
     :: ev != 0 -> i = ev - 1; END_CALL
     :: else -> skip
     fi;
     if
     :: stopping && reg == 0 ->
        /* try_finish_stop: S2, CAS (stopping, 0 producers) -> stopped */
        d_step {
          if
          :: gstate == gate_stopping && producers == 0 -> gstate = gate_stopped; ok = 1
          :: else -> ok = 0
          fi
        };
        if
        :: ok -> break
        :: else -> skip /* a producer is between G1 and G3: sched_yield */
        fi
     :: else ->
        /* idle(): arm_for_sleep (W1), reactor_.wait, disarm (W3) */
#ifdef BUG_RELAXED
        /* the gate load is only acquire: a weak memory model may perform
           it before W1's seq_cst store is visible (store->load reordering;
           README, "BUG_RELAXED") */
        gs = (!stopping && gstate != gate_running);
#endif
#ifndef BUG_WAKE_ORDER
        armed = 1;                                     /* W1 */
#endif
        /* re-check the queue (seq_cst load) and the gate: one step for
           two loads (README, "Merged loads") */
        if
        :: len(q) > 0 || GATE_CLOSED ->
           armed = 0                                   /* W3: no sleep */
        :: else ->
#ifdef BUG_WAKE_ORDER
           armed = 1;                                  /* W1 too late */
#endif
           /* reactor_.wait: the eventfd, or a started call's timer/I/O */
           if
           :: evfd -> evfd = 0
           :: reg & 1 -> ev = 1
           :: NC > 1 && (reg & 2) -> ev = 2
           :: NC > 2 && (reg & 4) -> ev = 3
           fi;
           armed = 0                                   /* W3 */
        fi
     fi
  od;
  /* the final drain after S2: reject whatever was accepted before S1 */
  do
  :: d_step { TAKE_ALL };
     REJECT_BATCH;
     /* producers() == 0 && queue_empty(): one step for two loads (after
        S2 nobody pushes, README "Merged loads") */
     if
     :: producers == 0 && len(q) == 0 -> break
     :: else -> skip /* sched_yield */
     fi
  od;
  assert(reg == 0 && batch == 0);
  loop_exited = 1
}

/* Stopper: a close() from another thread, at any time. init decides at
   the start whether one exists at all ("never" must be a choice made
   once: a Stopper that may still run would rescue a lost wake-up and hide
   it, and a Stopper that can give up at any time doubles the states). */
proctype Stopper() {
  byte wk;
  bool won;
  request_stop(won, wk)
}

init {
  byte c, wk;
  bool won;
  atomic {
    run Loop();
    for (c : 0 .. NC - 1) { run Caller(c) };
    c = 0;
    if
    :: run Stopper() /* an early close() */
    :: skip          /* only ~runner's close() below */
    fi
  };
  nret == NC * K;
  request_stop(won, wk); /* ~runner: close() */
  loop_exited;           /* join */
  _nr_pr == 1;           /* and an early close() has returned too */
  d_step {
#ifdef TOTALS
    assert(submitted == completed + cancelled);
    assert(submitted + rejected == NC * K);
#endif
    assert(len(q) == 0 && producers == 0 && gstate == gate_stopped);
    for (c : 0 .. NC - 1) { assert(!frame[c] && returned[c] && !sleeping[c]) }
    c = 0
  }
}

/* Liveness (check with spurious wake-ups on, ./pan -a -f): every call
   returns. */
ltl term { <> (nret == NC * K) }
