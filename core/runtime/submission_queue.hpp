// palitra — which queue carries submissions to the loop: a one-line
// selector. Production, tests and dsched use the intrusive MPSC queue
// (mpsc_queue.hpp). Only bench/'s ablation build names another header in
// PALITRA_SUBMISSION_QUEUE_HEADER (bench/ablation/mc_queue.hpp, moodycamel),
// which defines submission_queue_t itself.
#pragma once

#if defined(PALITRA_SUBMISSION_QUEUE_HEADER)
#include PALITRA_SUBMISSION_QUEUE_HEADER
#else
#include "runtime/mpsc_queue.hpp"
namespace palitra::detail {
using submission_queue_t = basic_mpsc_queue<os_sync>;
} // namespace palitra::detail
#endif
