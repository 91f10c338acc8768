#include "fitlm/dist/tcp_rendezvous.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "fitlm/core/error.h"

namespace fitlm::dist {
namespace {

constexpr const char* kComponent = "dist";
constexpr uint32_t kMagic = 0x564c5246;  // "FRLV"
constexpr size_t kHelloBytes = 20;       // magic, rank, world, payload size
constexpr size_t kReplyBytes = 8;        // magic, status; then the payload when status is kOk

enum Status : uint32_t { kOk = 0, kWrongWorld = 1, kWrongSize = 2, kWrongRank = 3 };

using Clock = std::chrono::steady_clock;

// A socket closed when it goes out of scope.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
};

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left.count(), 1 << 30));
}

// Waits until `fd` is ready for `events` or the deadline passes (false).
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, ms_left(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

// Whole buffers or false (timeout, peer closed, error).
bool send_all(int fd, const uint8_t* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    if (!wait_ready(fd, POLLOUT, deadline)) return false;
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool recv_all(int fd, uint8_t* p, size_t n, Clock::time_point deadline) {
  while (n > 0) {
    if (!wait_ready(fd, POLLIN, deadline)) return false;
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

template <typename T>
void put(uint8_t* at, T v) {
  std::memcpy(at, &v, sizeof v);
}
template <typename T>
T get(const uint8_t* at) {
  T v;
  std::memcpy(&v, at, sizeof v);
  return v;
}

std::string where_text(const TcpRendezvous& w) {
  return fmt::format("MASTER_ADDR:MASTER_PORT = {}:{}", w.addr, w.port);
}

[[noreturn]] void fail(const TcpRendezvous& w, const std::string& what) {
  throw_internal_error(kComponent, "rank {} of {}: TCP rendezvous at {}: {}", w.rank, w.world,
                       where_text(w), what);
}

std::vector<uint8_t> serve(const TcpRendezvous& w, std::span<const uint8_t> payload, size_t size,
                           Clock::time_point deadline) {
  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.fd < 0) fail(w, fmt::format("socket: {}", std::strerror(errno)));
  const int one = 1;
  ::setsockopt(listener.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  sa.sin_port = htons(static_cast<uint16_t>(w.port));
  if (::bind(listener.fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0)
    fail(w, fmt::format("rank 0 cannot listen on port {}: {}", w.port, std::strerror(errno)));
  if (::listen(listener.fd, w.world) != 0) fail(w, fmt::format("listen: {}", std::strerror(errno)));

  std::vector<bool> served(static_cast<size_t>(w.world), false);
  int left = w.world - 1;
  while (left > 0) {
    if (!wait_ready(listener.fd, POLLIN, deadline))
      fail(w, fmt::format("{} of the other {} ranks did not connect within {} s", left, w.world - 1,
                          w.timeout_s));
    Fd conn(::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC));
    if (conn.fd < 0) continue;  // the peer went away between poll and accept
    uint8_t hello[kHelloBytes];
    if (!recv_all(conn.fd, hello, sizeof hello, deadline)) continue;  // not one of ours
    if (get<uint32_t>(hello) != kMagic) continue;
    const int32_t rank = get<int32_t>(hello + 4), world = get<int32_t>(hello + 8);
    const uint64_t want = get<uint64_t>(hello + 12);
    Status status = kOk;
    if (world != w.world)
      status = kWrongWorld;
    else if (want != size)
      status = kWrongSize;
    else if (rank <= 0 || rank >= w.world || served[static_cast<size_t>(rank)])
      status = kWrongRank;
    uint8_t reply[kReplyBytes];
    put(reply, kMagic);
    put(reply + 4, static_cast<uint32_t>(status));
    const bool sent = send_all(conn.fd, reply, sizeof reply, deadline) &&
                      (status != kOk || send_all(conn.fd, payload.data(), size, deadline));
    if (status == kWrongRank)
      fail(w, fmt::format("a process says it is rank {} of {}, which {}", rank, world,
                          rank <= 0 || rank >= w.world ? "is not a rank of this job"
                                                       : "has already connected"));
    if (status != kOk)
      fail(w, fmt::format("rank {} expects {} ranks and {} bytes; rank 0 has {} and {}", rank,
                          world, want, w.world, size));
    if (!sent) continue;  // it will not get the bytes; it times out and says so
    served[static_cast<size_t>(rank)] = true;
    --left;
  }
  return {payload.begin(), payload.begin() + static_cast<ptrdiff_t>(size)};
}

// One connection attempt to rank 0: the socket, or an invalid Fd when nobody listens yet.
Fd try_connect(const TcpRendezvous& w, Clock::time_point deadline, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(w.port);
  const int rc = ::getaddrinfo(w.addr.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    why = fmt::format("cannot resolve '{}': {}", w.addr, ::gai_strerror(rc));
    return Fd{};
  }
  Fd out;
  for (addrinfo* a = res; a != nullptr && out.fd < 0; a = a->ai_next) {
    Fd s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
    if (s.fd < 0) continue;
    if (::connect(s.fd, a->ai_addr, a->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        why = std::strerror(errno);
        continue;
      }
      // Bounded: an address that drops packets would otherwise hold connect() for minutes.
      const Clock::time_point step = std::min(deadline, Clock::now() + std::chrono::seconds(2));
      if (!wait_ready(s.fd, POLLOUT, step)) {
        why = "connect timed out";
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        why = std::strerror(err);
        continue;
      }
    }
    out = std::move(s);
  }
  ::freeaddrinfo(res);
  return out;
}

std::vector<uint8_t> join(const TcpRendezvous& w, size_t size, Clock::time_point deadline) {
  std::string why = "no attempt";
  for (;;) {
    Fd s = try_connect(w, deadline, why);
    if (s.fd >= 0) {
      uint8_t hello[kHelloBytes];
      put(hello, kMagic);
      put(hello + 4, static_cast<int32_t>(w.rank));
      put(hello + 8, static_cast<int32_t>(w.world));
      put(hello + 12, static_cast<uint64_t>(size));
      uint8_t reply[kReplyBytes];
      if (send_all(s.fd, hello, sizeof hello, deadline) &&
          recv_all(s.fd, reply, sizeof reply, deadline) && get<uint32_t>(reply) == kMagic) {
        const uint32_t status = get<uint32_t>(reply + 4);
        if (status != kOk)
          fail(w, status == kWrongWorld  ? "rank 0 runs another world size"
                  : status == kWrongSize ? "rank 0 sends another payload size"
                                         : "rank 0 refused this rank (a duplicate rank?)");
        std::vector<uint8_t> out(size);
        if (recv_all(s.fd, out.data(), size, deadline)) return out;
        why = "rank 0 closed the connection before sending everything";
      } else {
        why = "rank 0 did not answer";
      }
    }
    if (ms_left(deadline) == 0)
      fail(w, fmt::format("no answer from rank 0 within {} s (last: {}): is rank 0 running, and "
                          "are MASTER_ADDR and MASTER_PORT right?",
                          w.timeout_s, why));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

std::vector<uint8_t> tcp_broadcast_bytes(const TcpRendezvous& w, std::span<const uint8_t> payload,
                                         size_t size) {
  if (w.world < 1 || w.rank < 0 || w.rank >= w.world)
    throw_internal_error(kComponent, "TCP rendezvous: rank {} of {}", w.rank, w.world);
  if (w.rank == 0 && payload.size() < size)
    throw_internal_error(kComponent, "TCP rendezvous: rank 0 has {} bytes to send, not {}",
                         payload.size(), size);
  if (w.world == 1) return {payload.begin(), payload.begin() + static_cast<ptrdiff_t>(size)};
  if (w.port <= 0 || w.port > 65535)
    throw_input_error("launch", "MASTER_PORT {} is not a port (1..65535)", w.port);
  if (w.rank != 0 && w.addr.empty())
    throw_input_error("launch", "rank {} of {}: MASTER_ADDR is not set", w.rank, w.world);
  const auto deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(w.timeout_s * 1000));
  return w.rank == 0 ? serve(w, payload, size, deadline) : join(w, size, deadline);
}

}  // namespace fitlm::dist
