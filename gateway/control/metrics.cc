#include "control/metrics.h"

#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status.h"
#include "control/stats_proto.h"
#include "glog/logging.h"

namespace ublkgw::control {

namespace {

constexpr absl::Duration kConnectionDeadline = absl::Seconds(2);

std::string Escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string VolumeLabels(const v1::Volume& v) {
  return absl::StrCat("device=\"", Escape(v.device_path()), "\",uri=\"", Escape(v.uri()), "\"");
}

std::string OpLabel(engine::OpKind kind) {
  return absl::StrCat(",op=\"", std::string(engine::OpKindName(kind)), "\"");
}

void Family(std::string& out, const char* name, const char* type, const char* help) {
  absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

// Cumulative counts at le = 2^k ns: every bucket whose upper bound is
// below 2^k ns lies wholly under it.
void AppendHistogram(std::string& out, const std::string& labels, const v1::LatencyHistogram& h) {
  constexpr int kFirstShift = 10, kLastShift = 36;
  for (int k = kFirstShift; k <= kLastShift; ++k) {
    const uint64_t bound = uint64_t{1} << k;
    uint64_t n = 0;
    for (const auto& b : h.buckets()) {
      if (b.le_ns() < bound) n += b.count();
    }
    absl::StrAppend(&out, "ublkgw_volume_latency_seconds_bucket{", labels, ",le=\"",
                    absl::StrFormat("%.12g", static_cast<double>(bound) / 1e9), "\"} ", n, "\n");
  }
  absl::StrAppend(&out, "ublkgw_volume_latency_seconds_bucket{", labels, ",le=\"+Inf\"} ",
                  h.count(), "\n");
  absl::StrAppend(&out, "ublkgw_volume_latency_seconds_sum{", labels, "} ",
                  absl::StrFormat("%.9f", static_cast<double>(h.sum_ns()) / 1e9), "\n");
  absl::StrAppend(&out, "ublkgw_volume_latency_seconds_count{", labels, "} ", h.count(), "\n");
}

}  // namespace

std::string RenderMetrics(const std::vector<v1::GetVolumeResponse>& volumes,
                          const std::string& version) {
  std::string out;
  Family(out, "ublkgw_build_info", "gauge", "The daemon's version.");
  absl::StrAppend(&out, "ublkgw_build_info{version=\"", Escape(version), "\"} 1\n");
  Family(out, "ublkgw_volumes", "gauge", "Volumes of this daemon, attached or being restored.");
  absl::StrAppend(&out, "ublkgw_volumes ", volumes.size(), "\n");

  Family(out, "ublkgw_volume_up", "gauge",
         "1 when every queue of the volume is connected and serving, else 0.");
  for (const auto& r : volumes) {
    absl::StrAppend(&out, "ublkgw_volume_up{", VolumeLabels(r.volume()), "} ",
                    r.volume().health() == v1::HEALTH_OK ? 1 : 0, "\n");
  }
  // One sample per volume of each of these.
  struct PerVolume {
    const char* name;
    const char* type;
    const char* help;
    uint64_t (*get)(const v1::GetVolumeResponse&);
  };
  const PerVolume per_volume[] = {
      {"ublkgw_volume_size_bytes", "gauge", "The device's size.",
       [](const v1::GetVolumeResponse& r) { return r.volume().size_bytes(); }},
      {"ublkgw_volume_in_flight_requests", "gauge",
       "Requests received from the kernel and not yet completed.",
       [](const v1::GetVolumeResponse& r) { return r.stats().in_flight(); }},
      {"ublkgw_volume_reconnects_total", "counter", "NBD connections re-established.",
       [](const v1::GetVolumeResponse& r) { return r.stats().reconnects(); }},
      {"ublkgw_volume_socket_recvs_total", "counter", "RECVs from the NBD sockets.",
       [](const v1::GetVolumeResponse& r) { return r.stats().socket_recvs(); }},
      {"ublkgw_volume_ring_enters_total", "counter",
       "io_uring_enter calls of the volume's queues.",
       [](const v1::GetVolumeResponse& r) { return r.stats().ring_enters(); }},
      {"ublkgw_volume_acks_pushed_total", "counter",
       "ACKs sent at once because a reply came in part.",
       [](const v1::GetVolumeResponse& r) { return r.stats().acks_pushed(); }},
  };
  for (const PerVolume& m : per_volume) {
    Family(out, m.name, m.type, m.help);
    for (const auto& r : volumes) {
      absl::StrAppend(&out, m.name, "{", VolumeLabels(r.volume()), "} ", m.get(r), "\n");
    }
  }
  struct Counter {
    const char* name;
    const char* help;
    uint64_t (v1::OpStats::*get)() const;
  };
  const Counter counters[] = {
      {"ublkgw_volume_ops_total", "Requests completed, successfully or not.", &v1::OpStats::ops},
      {"ublkgw_volume_bytes_total", "Bytes covered by completed requests.", &v1::OpStats::bytes},
      {"ublkgw_volume_errors_total", "Requests completed with an error.", &v1::OpStats::errors},
  };
  for (const Counter& c : counters) {
    Family(out, c.name, "counter", c.help);
    for (const auto& r : volumes) {
      for (const OpField& op : kOpFields) {
        absl::StrAppend(&out, c.name, "{", VolumeLabels(r.volume()), OpLabel(op.kind), "} ",
                        ((r.stats().*op.get)().*c.get)(), "\n");
      }
    }
  }
  Family(out, "ublkgw_volume_latency_seconds", "histogram",
         "Time from the kernel handing a request to the daemon to its completion.");
  for (const auto& r : volumes) {
    for (const OpField& op : kOpFields) {
      AppendHistogram(out, absl::StrCat(VolumeLabels(r.volume()), OpLabel(op.kind)),
                      (r.stats().*op.get)().latency());
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, std::function<std::string()> render) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "' has no port: give HOST:PORT, e.g. 127.0.0.1:9477"));
  }
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  uint32_t port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address '", address,
                                                   "': the port must be 0 to 65535"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV | AI_NUMERICHOST;
  addrinfo* found = nullptr;
  const int gai = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
  if (gai != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics address '", address, "': ", gai_strerror(gai),
                     ": give a numeric address such as 127.0.0.1:9477, [::1]:9477 or :9477"));
  }
  UniqueFd fd(socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  absl::Status status;
  if (!fd.valid()) {
    status = ErrnoToStatus(errno, "metrics socket");
  } else {
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0 || listen(fd.get(), 16) != 0) {
      status = ErrnoToStatus(errno, absl::StrCat("serving metrics on ", address,
                                                 " (is the address in use or not local?)"));
    }
  }
  freeaddrinfo(found);
  if (!status.ok()) return status;
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len);
  const uint16_t bound_port = ntohs(bound.ss_family == AF_INET6
                                        ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  UniqueFd stop(eventfd(0, EFD_CLOEXEC));
  if (!stop.valid()) return ErrnoToStatus(errno, "eventfd");
  return std::unique_ptr<MetricsServer>(
      new MetricsServer(std::move(fd), std::move(stop), bound_port, std::move(render)));
}

MetricsServer::MetricsServer(UniqueFd listen_fd, UniqueFd stop_fd, uint16_t port,
                             std::function<std::string()> render)
    : listen_fd_(std::move(listen_fd)),
      stop_fd_(std::move(stop_fd)),
      port_(port),
      render_(std::move(render)) {
  thread_ = std::thread([this] { Serve(); });
}

MetricsServer::~MetricsServer() {
  const uint64_t one = 1;
  (void)!write(stop_fd_.get(), &one, sizeof(one));
  thread_.join();
}

void MetricsServer::Serve() {
  while (true) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      PLOG(ERROR) << "metrics listener: poll";
      return;
    }
    if (fds[1].revents != 0) return;
    UniqueFd conn(accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn.valid()) {
      // Out of fds, say: wait a little (or for stop) rather than spin.
      pollfd stop = {stop_fd_.get(), POLLIN, 0};
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) poll(&stop, 1, 100);
      continue;
    }
    Answer(conn.get());
  }
}

void MetricsServer::Answer(int fd) {
  // One connection at a time, each with a whole-exchange deadline: a slow
  // or silent client holds the listener for at most this long.
  const absl::Time deadline = absl::Now() + kConnectionDeadline;
  auto wait_for = [&](short events) {
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0) return false;
    pollfd p = {fd, events, 0};
    return poll(&p, 1, static_cast<int>(ms)) == 1;
  };
  std::string request;
  char buf[1024];
  while (request.size() < 8192 && request.find("\r\n\r\n") == std::string::npos &&
         request.find("\n\n") == std::string::npos) {
    if (!wait_for(POLLIN)) return;
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    request.append(buf, static_cast<size_t>(n));
  }
  std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
  if (absl::StartsWith(request, "GET /metrics ") || absl::StartsWith(request, "GET /metrics?")) {
    body = render_();
  } else if (absl::StartsWith(request, "GET / ")) {
    type = "text/plain; charset=utf-8";
    body = "ublkgwd: metrics are at /metrics\n";
  } else if (absl::StartsWith(request, "GET ")) {
    status = "404 Not Found";
    body = "not found: metrics are at /metrics\n";
  } else {
    status = "405 Method Not Allowed";
    body = "only GET /metrics is served\n";
  }
  std::string response = absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", type,
                                       "\r\nContent-Length: ", body.size(),
                                       "\r\nConnection: close\r\n\r\n", body);
  std::string_view rest = response;
  while (!rest.empty()) {
    if (!wait_for(POLLOUT)) return;
    const ssize_t n = send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return;
    rest.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace ublkgw::control
