// DeferredWakes: wakes sleeping scheduler threads once per event-loop turn instead of once per
// request.
//
// Waking a sleeping thread is a futex syscall plus a reschedule: several microseconds on a VM,
// paid by the JS thread inside Submit. A server handles many requests per loop turn (one epoll
// return, many readable sockets), and the batcher would only gather them anyway. So Submit marks
// its scheduler here, and the first mark of a turn posts one message to the env's own loop
// through a threadsafe function (an eventfd write: the JS thread is running, nobody is woken).
// libuv delivers it in the next poll phase, which returns at once because the eventfd is
// readable: the wakes happen after the I/O callbacks already in hand and before the loop could
// block. Pure N-API (no libuv headers, which the cmake-js build does not have).
//
// Threading: JS thread only (the env's loop thread); no lock. Ownership: one per env, created
// at addon init; EnvState::wakes points to it. The threadsafe function is unreferenced (it never
// keeps the process alive; a submitted job's completion channel does) and Node releases it when
// the env goes away; its finalizer clears EnvState::wakes (submits then wake at once) and
// frees this object. Like the completion channel (RunJob::CreateCompletionChannel), it holds a
// shared_ptr to the env's state until that finalizer. Node calls the finalizer first, then
// OnMessage with a null env for each message still queued: OnMessage touches nothing then.
#pragma once

#include <node_api.h>

#include <chrono>
#include <memory>
#include <vector>

namespace nimify {

class Scheduler;
struct EnvState;

class DeferredWakes {
 public:
  // JS thread, addon init. Sets state->wakes, or leaves it null when the channel cannot be
  // created (submits then wake their scheduler at once).
  static void Create(napi_env env, const std::shared_ptr<EnvState>& state);
  // JS thread: wake `s` at the end of this loop turn. The pending wake holds a reference.
  void Add(std::shared_ptr<Scheduler> s);
  // JS thread, right after a request ran inline alone and its promise settled (before infer()
  // returned it): follows its delivery through the microtask queue (EnvState::lone_*), so that
  // the scheduler can tell a caller answering that result from other requests. This queues a
  // native function ahead of the caller's reaction to the promise (attached once infer()
  // returns); it sets lone_delivered and queues a trailing second one (the run counts in
  // lone_awaiting until the first). Between the two runs the caller's `await` continuation,
  // so a request submitted there finds lone_awaiting 0 and
  // lone_delivered set: a sequential client. A request submitted while lone_awaiting > 0 comes
  // from the same synchronous stretch of JS as the lone run (a loop submitting a burst); one
  // from another callback (another socket's data) comes after the trailing function cleared
  // lone_delivered. A caller whose continuation is more promise hops away looks like another
  // callback: it is not chained. If queueing fails, the counts stay until the next message here.
  static void MarkLoneRun(napi_env env);
  // JS thread: opens the env's loop turn (EnvState::turn_open) at `now` unless one is open, and
  // makes sure a message is on its way to close it. Returns whether it opened it: the request
  // being submitted is the first of its turn.
  bool OpenTurn(EnvState* state, std::chrono::steady_clock::time_point now);
  // Whether a message is on its way (it will run RunJob::RunDeferred).
  bool posted() const { return posted_; }
  // JS thread: whether a lone request submitted at `now` may run inline (the rule, explained in
  // Scheduler::Submit): no lone run of the same stretch of JS awaits its delivery, the request
  // is the first of its turn (`first`) or a sequential client's next, and the turn has used at
  // most `budget_us`.
  static bool MayRunLone(const EnvState& state, bool first, std::chrono::steady_clock::time_point now, double budget_us);

 private:
  DeferredWakes() = default;
  static void OnMessage(napi_env env, napi_value js_cb, void* context, void* data);
  static void OnFinalize(napi_env env, void* data, void* hint);

  napi_threadsafe_function tsfn_ = nullptr;
  bool posted_ = false;  // a message is on its way: later marks in this turn just join it
  std::shared_ptr<EnvState> state_;  // released with this object, in OnFinalize
  std::vector<std::shared_ptr<Scheduler>> pending_;
};

}  // namespace nimify
