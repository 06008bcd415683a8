// palitra — everything: #include <palitra/palitra.hpp>
#pragma once

#include <palitra/allocator.hpp>
#include <palitra/channel.hpp>
#include <palitra/config.hpp>
#include <palitra/error.hpp>
#include <palitra/future.hpp>
#include <palitra/io.hpp>
#include <palitra/net.hpp>
#include <palitra/outcome.hpp>
#include <palitra/run.hpp>
#include <palitra/runner.hpp>
#include <palitra/started.hpp>
#include <palitra/sync.hpp>
#include <palitra/task.hpp>
#include <palitra/time.hpp>
#include <palitra/to_thread.hpp>
#include <palitra/when.hpp>
