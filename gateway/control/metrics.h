// Prometheus text exposition (format 0.0.4) of the daemon's volumes, and a
// minimal HTTP listener that serves it on GET /metrics.
#ifndef UBLKGW_CONTROL_METRICS_H_
#define UBLKGW_CONTROL_METRICS_H_

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "ublkgw/v1/ublkgw.pb.h"

namespace ublkgw::control {

// Every volume's gauges and counters, labelled device="/dev/ublkbN" and
// uri="..."; per-operation series add op="read" etc. Latency is a
// histogram in seconds with a bucket per power of two of nanoseconds.
std::string RenderMetrics(const std::vector<v1::GetVolumeResponse>& volumes,
                          const std::string& version);

// Serves `render()` to HTTP GET /metrics on one thread, one connection at
// a time, each with a 2 s deadline for the whole exchange (a client that
// trickles bytes is cut off). Stops and joins in the destructor.
class MetricsServer {
 public:
  // `address`: IP:PORT, [IPv6]:PORT or :PORT (all interfaces), numeric
  // (no name lookups); port 0
  // picks a free one (see port()). INVALID_ARGUMENT for a bad address,
  // UNAVAILABLE or PERMISSION_DENIED when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& address, std::function<std::string()> render);
  ~MetricsServer();

  uint16_t port() const { return port_; }

 private:
  MetricsServer(UniqueFd listen_fd, UniqueFd stop_fd, uint16_t port,
                std::function<std::string()> render);
  void Serve();
  void Answer(int fd);

  UniqueFd listen_fd_;
  UniqueFd stop_fd_;  // eventfd: the destructor -> Serve()
  uint16_t port_;
  std::function<std::string()> render_;
  std::thread thread_;
};

}  // namespace ublkgw::control

#endif  // UBLKGW_CONTROL_METRICS_H_
