// `shopclip serve`: a run's text tower and a saved pool index (`shopclip index build`) answering
// search queries over HTTP (cpp-httplib). The engine, its batching and its limits are in
// core/serve/ (query_service.h, request.h, metrics.h); this file wires them to the sockets, the
// signals and the command line.
//
// Shutdown: SIGTERM or SIGINT stops the listener; requests already being handled are answered
// (httplib joins its handler threads after the listener closes, and the query service answers
// everything it accepted) before the process exits 0. The signals are blocked in every thread and
// taken by one thread with sigwait, so no handler code runs in signal context.

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <httplib.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/eval/index_store.h"
#include "core/model/dual_encoder.h"
#include "core/model/encoders.h"
#include "core/serve/metrics.h"
#include "core/serve/query_service.h"
#include "core/serve/request.h"
#include "data/error.h"
#include "data/files.h"
#include "data/parallel.h"
#include "launch/commands.h"
#include "launch/measure.h"
#include "launch/open_run.h"

namespace shopclip {
namespace {

struct ServeOptions {
  std::string run, checkpoint, index_dir, host = "127.0.0.1", port_file;
  int port = 8080;
  int threads = 0;        // CPU threads for the text tower and the search; 0 = all cores
  int http_threads = 64;  // connections served at once (a kept-alive connection holds one)
  QueryServiceOptions service;
  RequestLimits limits;
  std::vector<std::string> overrides;
};

const char* kJson = "application/json";

// The handler of POST /search (batch = false) and POST /search/batch.
httplib::Server::Handler search_handler(bool batch, const RequestLimits& limits,
                                        QueryService& service, ServeMetrics& metrics, Logger& log) {
  return [batch, &limits, &service, &metrics, &log](const httplib::Request& request,
                                                    httplib::Response& response) {
    const auto start = MeasureClock::now();
    const std::string endpoint = batch ? "search/batch" : "search";
    const auto finish = [&](int status, const std::string& body) {
      response.status = status;
      response.set_content(body, kJson);
      metrics.count_request(endpoint, status, seconds_since(start));
    };
    const auto refuse = [&](int status, const char* kind, const std::string& message) {
      metrics.count_error(kind);
      finish(status, error_json({kind, message}));
    };
    ParsedSearch parsed;
    RequestError error;
    if (!parse_search_request(request.body, batch, limits, service.pool_size(), parsed, error)) {
      metrics.count_error(error.kind);
      finish(400, error_json(error));
      return;
    }
    try {
      std::future<SearchAnswer> pending = service.submit(std::move(parsed.queries), parsed.k);
      const SearchAnswer answer = pending.get();
      metrics.observe_request_stages(answer.timing.queue_seconds, answer.timing.text_tower_seconds,
                                     answer.timing.search_seconds);
      const double took_ms = 1000 * seconds_since(start);
      finish(200, batch ? batch_answer_json(answer.hits, took_ms)
                        : search_answer_json(answer.hits.front(), took_ms));
    } catch (const QueueFull& e) {
      response.set_header("Retry-After", "1");
      refuse(503, "queue_full", e.what());
    } catch (const ShuttingDown& e) {
      refuse(503, "shutting_down", e.what());
    } catch (const std::exception& e) {
      log.error("serve: {} failed: {}", endpoint, e.what());
      refuse(500, "internal", e.what());
    }
  };
}

// Answers httplib's own refusals (no such route, a body over the limit, an unreadable request) as
// JSON with a kind, counted like ours. Responses our handlers wrote (a body is set) pass through.
httplib::Server::HandlerWithResponse error_handler(const RequestLimits& limits,
                                                   ServeMetrics& metrics) {
  return [&limits, &metrics](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    RequestError error;
    if (response.status == 404) {
      error = {"not_found",
               fmt::format("no endpoint {} {}; this service answers POST /search, POST "
                           "/search/batch, GET /healthz and GET /metrics",
                           request.method, request.path)};
    } else if (response.status == 413) {
      // The contract: every malformed request is a 400 that names the problem.
      response.status = 400;
      error = {"body_too_large",
               fmt::format("the body is over the limit of {} bytes (a form-encoded body over "
                           "8192 bytes too: send Content-Type: application/json)",
                           limits.max_body_bytes)};
    } else {
      error = {"bad_http",
               fmt::format("the HTTP request could not be read (status {})", response.status)};
    }
    metrics.count_error(error.kind);
    metrics.count_request("other", response.status, 0);
    response.set_content(error_json(error), kJson);
    return httplib::Server::HandlerResponse::Handled;
  };
}

// What /healthz reports about the served model and index.
struct ServedModel {
  std::string checkpoint, xxh64, factory;
};

// Server settings and every route: the two search endpoints, /healthz, /metrics, and JSON for
// httplib's own refusals and for exceptions that escape a handler.
void register_handlers(httplib::Server& server, const ServeOptions& options, QueryService& service,
                       ServeMetrics& metrics, const ServedModel& model, Logger& log) {
  const int http_threads = options.http_threads;
  server.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
  server.set_payload_max_length(options.limits.max_body_bytes);
  // httplib closes a kept-alive connection after 5 requests by default: a search box's client
  // would reconnect every 5 queries, through a listen backlog of 5.
  server.set_keep_alive_max_count(10000);
  // An answer goes out as two writes (headers, body): with Nagle's algorithm the body would wait
  // for the client's delayed ACK of the headers, 40 ms on Linux, on every request.
  server.set_tcp_nodelay(true);
  server.Post("/search", search_handler(false, options.limits, service, metrics, log));
  server.Post("/search/batch", search_handler(true, options.limits, service, metrics, log));
  server.Get("/healthz",
             [&service, &metrics, model](const httplib::Request&, httplib::Response& response) {
               const nlohmann::json health = {
                   {"status", "ok"},         {"images", service.pool_size()},
                   {"index", model.factory}, {"checkpoint", model.checkpoint},
                   {"xxh64", model.xxh64},   {"queue_depth", service.queue_depth()}};
               response.set_content(health.dump(), kJson);
               metrics.count_request("healthz", 200, 0);
             });
  server.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& response) {
    response.set_content(metrics.prometheus_text(), "text/plain; version=0.0.4");
    metrics.count_request("metrics", 200, 0);
  });
  server.set_error_handler(error_handler(options.limits, metrics));
  server.set_exception_handler([&metrics, &log](const httplib::Request&,
                                                httplib::Response& response,
                                                std::exception_ptr failure) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log.error("serve: a handler failed: {}", what);
    metrics.count_error("internal");
    response.status = 500;
    response.set_content(error_json({"internal", what}), kJson);
  });
}

// Binds --host:--port (0 = any free port) and writes --port-file once listening is certain, so
// that a script may wait for the file and then connect. Returns the port.
int bind_port(httplib::Server& server, const ServeOptions& options) {
  // Debian's httplib 0.11 is a compiled library that listens with a backlog of 5: a burst of new
  // connections (search boxes opening at once; e2e.serve's 24 clients under load) overflowed it,
  // and each dropped attempt was retried by the client's kernel 1, 3, 7... seconds later. Linux
  // lets listen() be called again on the listening socket to raise its backlog (capped at
  // net.core.somaxconn); httplib's socket-options hook hands over that socket before binding.
  auto listening_socket = std::make_shared<socket_t>(INVALID_SOCKET);
  server.set_socket_options([listening_socket](socket_t socket) {
    httplib::default_socket_options(socket);
    *listening_socket = socket;
  });
  int port = options.port;
  if (port == 0) {
    port = server.bind_to_any_port(options.host);
  } else if (!server.bind_to_port(options.host, port)) {
    port = -1;
  }
  if (port <= 0) {
    throw std::runtime_error(
        fmt::format("serve: cannot listen on {}:{} (in use, or not an "
                    "address of this machine?)",
                    options.host, options.port));
  }
  // httplib calls the hook for each address it tries and returns at the first that binds: the
  // last socket the hook saw is the listening one.
  if (*listening_socket == INVALID_SOCKET) {
    throw std::logic_error("serve: httplib did not pass its listening socket to the hook");
  }
  if (::listen(*listening_socket, SOMAXCONN) != 0) {
    throw std::runtime_error(fmt::format("serve: cannot raise the listen backlog on {}:{} ({})",
                                         options.host, port, std::strerror(errno)));
  }
  if (!options.port_file.empty()) {
    const std::string partial = options.port_file + ".partial";
    std::ofstream(partial) << port << "\n";
    std::filesystem::rename(partial, options.port_file);
  }
  return port;
}

// Serves on the bound socket until one of `stop_signals` (blocked in every thread) arrives: a
// waiting thread takes it with sigwait and stops the listener, which returns once its handlers
// are joined; then the query service answers what it accepted. Returns whether the listener
// stopped without an error.
bool listen_until_signal(httplib::Server& server, const sigset_t& stop_signals,
                         QueryService& service, Logger& log) {
  std::atomic<bool> signalled{false}, listener_returned{false};
  std::thread signal_waiter([&] {
    int signal_number = 0;
    sigwait(&stop_signals, &signal_number);
    if (signalled.exchange(true)) return;  // woken by the exit path below, not by a signal
    log.info("serve: {}: no new connections; answering the {} queries in flight",
             signal_number == SIGTERM ? "SIGTERM" : "SIGINT", service.queue_depth());
    // stop() does nothing before the listener runs: a signal that early must wait for it.
    while (!server.is_running() && !listener_returned) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    server.stop();
  });
  const bool listened = server.listen_after_bind();  // returns after stop(), handlers joined
  listener_returned = true;
  if (!signalled.exchange(true)) pthread_kill(signal_waiter.native_handle(), SIGTERM);
  signal_waiter.join();
  service.shutdown();
  return listened;
}

int run_serve(const ServeOptions& options, CommandContext& context) {
  Logger& log = context.log;
  if (options.index_dir.empty()) {
    throw std::invalid_argument(
        "serve: name the saved index (--index-dir; `shopclip index build` makes one)");
  }
  if (options.http_threads < 1) throw std::invalid_argument("serve: --http-threads must be >= 1");
  // Block SIGTERM and SIGINT before any thread starts (threads inherit the mask); one thread
  // takes them with sigwait (listen_until_signal).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  OpenedRun run = open_run(options.run, options.checkpoint, options.overrides, context.comm);
  torch::set_num_threads(data::resolve_threads(options.threads));
  DualEncoderAdapter encoder(run.loaded.model, data::Tokenizer(run.loaded.vocab),
                             run.config.model.text.context_length);
  SavedIndex saved = read_saved_index(options.index_dir);
  const ServedModel model{run.checkpoint, fmt::format("{:016x}", data::xxh64_file(run.checkpoint)),
                          saved.manifest.factory};
  check_index_model(saved.manifest, options.index_dir, model.xxh64, encoder.dim());

  ServeMetrics metrics({"search", "search/batch", "healthz", "metrics"});
  QueryService service(encoder, std::move(saved), options.service, metrics);
  metrics.set_queue_depth([&service] { return service.queue_depth(); });
  httplib::Server server;
  register_handlers(server, options, service, metrics, model, log);
  const int port = bind_port(server, options);
  log.info(
      "serve: http://{}:{} answers POST /search over {} images (index {}, model {}), {} "
      "HTTP threads, batches of up to {} queries waiting up to {} ms",
      options.host, port, service.pool_size(), model.factory, model.xxh64, options.http_threads,
      options.service.max_batch, options.service.max_wait_ms);
  const bool listened = listen_until_signal(server, stop_signals, service, log);
  log.info("serve: stopped after {} searches, {} batch searches", metrics.requests("search", 200),
           metrics.requests("search/batch", 200));
  if (!listened) log.warn("serve: the listener stopped with an error");
  return 0;
}

}  // namespace

void register_serve_command(CommandRegistry& commands) {
  auto options = std::make_shared<ServeOptions>();
  CLI::App* serve = commands.add(
      "serve", "answer search queries over HTTP from a run and its saved index", Processes::kOne,
      [options](CommandContext& context) { return run_serve(*options, context); });
  serve->add_option("--run", options->run, "the shopclip run whose text tower encodes queries")
      ->required();
  serve->add_option("--checkpoint", options->checkpoint,
                    "its checkpoint (default <run>/checkpoints/best.pt)");
  serve
      ->add_option("--index-dir", options->index_dir,
                   "a saved index of that checkpoint (`shopclip index build`)")
      ->required();
  serve->add_option("--host", options->host, "address to listen on (default 127.0.0.1)");
  serve->add_option("--port", options->port, "port (default 8080; 0 = any free port)");
  serve->add_option("--port-file", options->port_file,
                    "write the port here once listening (for scripts; with --port 0)");
  serve->add_option("--threads", options->threads,
                    "CPU threads for the text tower and the search; 0 = all cores");
  serve->add_option("--http-threads", options->http_threads,
                    "connections served at once (default 64; a kept-alive connection holds "
                    "one); more wait for a thread");
  serve->add_option("--max-batch", options->service.max_batch,
                    "queries per text-tower forward (default 32)");
  serve->add_option("--max-wait-ms", options->service.max_wait_ms,
                    "how long a query waits for others to share its forward (default 2)");
  serve->add_option("--queue", options->service.queue_capacity,
                    "queries accepted and not answered before 503 (default 1024)");
  serve->add_option("--max-query-chars", options->limits.max_query_chars,
                    "characters per query (default 256)");
  serve->add_option("--max-k", options->limits.max_k, "largest k (default 1000)");
  serve->add_option("--max-batch-queries", options->limits.max_batch_queries,
                    "queries per /search/batch request (default 256)");
  serve->add_option("--max-body-bytes", options->limits.max_body_bytes,
                    "request body limit (default 65536)");
  serve->add_option("--set", options->overrides,
                    "key.path=value over the run's config (run.device, ...)");
}

}  // namespace shopclip
