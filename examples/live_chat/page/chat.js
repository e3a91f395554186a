/*
 * A live two-person chat through architect.js: a waiting room while the status is
 * "waiting", messages both ways as live updates, and the end states (partner left,
 * submitted, timed out) as clear notices.
 */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const ENDED = {
    "partner disconnect": ["Your partner left the chat. You can still submit.", true],
    completed: ["Submitted. Thank you!", false],
    disconnect: ["You were disconnected from this chat.", true],
    timeout: ["The time for this chat ran out.", true],
    expired: ["The time allowed for this chat ran out, or it ended on the server's side.", true],
    returned: ["This chat was returned.", true],
  };
  let sent = 0;

  function notice(text, isError) {
    $("notice").textContent = text;
    $("notice").className = isError ? "notice error" : "notice";
    $("notice").hidden = false;
  }

  function addMessage(who, text) {
    const item = document.createElement("li");
    item.className = who;
    item.textContent = text;
    $("messages").append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  function showStatus(status) {
    $("status").textContent = status;
    $("waiting-room").hidden = status !== "waiting";
    if (status === "in task") $("chat").hidden = false;
    const ended = ENDED[status];
    if (ended) {
      notice(ended[0], ended[1]);
      $("send-form").hidden = true;
      if (status !== "partner disconnect") $("chat").hidden = true;
    }
  }

  function showTask(task) {
    if (task.isPreview) {
      notice("Preview. Open this page as /?worker_id=alice&assignment_id=1 to chat.");
      return;
    }
    if (task.isBlocked) {
      notice(task.failureReason || "There is no chat for you right now.", true);
      return;
    }
    const params = new URLSearchParams(window.location.search);
    $("worker").textContent = params.get("worker_id");
    params.set("worker_id", params.get("worker_id") === "bob" ? "alice" : "bob");
    $("partner-link").href = "?" + params.toString();
    $("partner-link").textContent = "?" + params.toString();
    $("topic").textContent = "Topic: " + task.initData.topic;
    task.connectLive();
  }

  const task = Architect.connect({
    onReady: showTask,
    onError: (error) => notice("Could not reach the task: " + error.message, true),
    onStatus: showStatus,
    onConnectionChange: (state) => {
      $("connection").textContent = state;
    },
    // Replayed updates (after a reload) include this page's own messages, without "from".
    onLiveUpdate: (update) => addMessage(update.from || "mine", update.text),
  });
  window.task = task;

  $("send-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text) return;
    $("message").value = "";
    addMessage("mine", text);
    sent += 1;
    await task.sendLiveUpdate({ text: text });
  });

  $("submit-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("submit").disabled = true;
    try {
      await task.submit({ rating: Number($("rating").value), messages_sent: sent });
    } catch (error) {
      $("submit").disabled = false;
      notice("The submission failed: " + error.message, true);
      return;
    }
    notice("Submitted. Thank you!", false);
    $("chat").hidden = true;
  });
})();
