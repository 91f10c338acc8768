#include "fitlm/dist/tcp_rendezvous.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "fitlm/core/error.h"

using namespace fitlm;
using namespace fitlm::dist;

namespace {

// A port nobody listens on right now (the kernel's pick for port 0, released again).
int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  socklen_t len = sizeof sa;
  if (::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    ::close(s);
    return 0;
  }
  ::close(s);
  return ntohs(sa.sin_port);
}

std::vector<uint8_t> payload_of(uint8_t salt) {
  std::vector<uint8_t> p(128);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(i * 37 + salt) | 1;
  return p;
}

}  // namespace

// Three processes on 127.0.0.1, ranks started in reverse order (rank 0 last, so the others
// retry until it listens): each must end with rank 0's 128 bytes.
TEST(TcpRendezvous, ThreeProcessesGetRankZerosBytes) {
  const int port = free_port();
  ASSERT_GT(port, 0);
  constexpr int kWorld = 3;
  const std::vector<uint8_t> want = payload_of(5);
  std::vector<pid_t> pids;
  std::vector<int> reads;
  for (int rank = kWorld - 1; rank >= 0; --rank) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      int code = 0;
      try {
        // Every rank but 0 passes other bytes, which must be ignored.
        const std::vector<uint8_t> mine = rank == 0 ? want : payload_of(static_cast<uint8_t>(rank));
        const std::vector<uint8_t> got = tcp_broadcast_bytes(
            {.addr = "127.0.0.1", .port = port, .rank = rank, .world = kWorld, .timeout_s = 30},
            rank == 0 ? std::span<const uint8_t>(mine) : std::span<const uint8_t>(), 128);
        if (::write(fds[1], got.data(), got.size()) != static_cast<ssize_t>(got.size())) code = 3;
      } catch (const std::exception& e) {
        const std::string msg = e.what();
        (void)!::write(fds[1], msg.data(), msg.size());
        code = 2;
      }
      ::close(fds[1]);
      ::_exit(code);
    }
    ::close(fds[1]);
    pids.push_back(pid);
    reads.push_back(fds[0]);
    if (rank != 0) ::usleep(50 * 1000);
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    const int rank = kWorld - 1 - static_cast<int>(i);
    std::vector<uint8_t> got;
    uint8_t buf[256];
    for (ssize_t k; (k = ::read(reads[i], buf, sizeof buf)) > 0;)
      got.insert(got.end(), buf, buf + k);
    ::close(reads[i]);
    int status = 0;
    ::waitpid(pids[i], &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "rank " << rank;
    EXPECT_EQ(WEXITSTATUS(status), 0)
        << "rank " << rank << ": " << std::string(got.begin(), got.end());
    EXPECT_EQ(got, want) << "rank " << rank;
  }
}

TEST(TcpRendezvous, OneRankNeedsNoSocket) {
  const std::vector<uint8_t> want = payload_of(9);
  EXPECT_EQ(tcp_broadcast_bytes({.addr = "", .port = 0, .rank = 0, .world = 1}, want, 128), want);
}

// Nobody listens: the rank gives up after its timeout and names where it looked.
TEST(TcpRendezvous, TimesOutNamingMasterAddrAndPort) {
  const int port = free_port();
  ASSERT_GT(port, 0);
  const auto start = std::chrono::steady_clock::now();
  try {
    tcp_broadcast_bytes(
        {.addr = "127.0.0.1", .port = port, .rank = 1, .world = 2, .timeout_s = 0.5}, {}, 128);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("MASTER_ADDR:MASTER_PORT = 127.0.0.1:" + std::to_string(port)),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("rank 1 of 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("within 0.5 s"), std::string::npos) << msg;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

// Rank 0 alone waits for the others as long as its timeout, then says how many are missing.
TEST(TcpRendezvous, RankZeroTimesOutWhenOthersNeverCome) {
  const int port = free_port();
  ASSERT_GT(port, 0);
  const std::vector<uint8_t> p = payload_of(1);
  try {
    tcp_broadcast_bytes(
        {.addr = "127.0.0.1", .port = port, .rank = 0, .world = 3, .timeout_s = 0.3}, p, 128);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("2 of the other 2 ranks did not connect"),
              std::string::npos)
        << e.what();
  }
}
