/*
 * Remote procedure calls through architect.js: task.callRemote(name, args) is a
 * Promise of the Python function's result; it rejects with an Architect.RemoteError
 * whose message says what went wrong on the server.
 */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);

  function notice(text, isError) {
    $("notice").textContent = text;
    $("notice").className = isError ? "notice error" : "notice";
    $("notice").hidden = false;
  }

  function showResult(lines) {
    $("error").hidden = true;
    $("result").replaceChildren();
    for (const line of lines) {
      const item = document.createElement("p");
      item.textContent = line;
      $("result").append(item);
    }
  }

  function showError(error) {
    $("result").replaceChildren();
    $("error").textContent = "The server said: " + error.message;
    $("error").hidden = false;
  }

  /** Call a procedure with the text box's content; show its result or its error. */
  async function call(name, describe) {
    try {
      showResult(["..."]);
      showResult(describe(await task.callRemote(name, { text: $("text").value })));
    } catch (error) {
      showError(error);
    }
  }

  const task = Architect.connect({
    onReady: (ready) => {
      if (ready.isPreview) {
        notice("Preview. Open this page as /?worker_id=alice&assignment_id=1 to work on it.");
      } else if (ready.isBlocked) {
        notice(ready.failureReason || "There is no task for you right now.", true);
      } else {
        $("original").textContent = ready.initData.text;
        $("text").value = ready.initData.text;
        $("task").hidden = false;
        ready.connectLive(); // procedure calls travel over the live socket
      }
    },
    onError: (error) => notice("Could not reach the task: " + error.message, true),
  });
  window.task = task;

  $("count").addEventListener("click", () =>
    call("count_words", (result) => [result.words + " words, " + result.characters + " characters"])
  );

  $("check").addEventListener("click", () =>
    call("check_spelling", (result) =>
      result.unknown.length === 0
        ? ["No unknown words."]
        : result.unknown.map(
            (entry) =>
              entry.word + ": " + (entry.suggestions.length ? entry.suggestions.join(", ") + "?" : "no idea")
          )
    )
  );

  $("task").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("submit").disabled = true;
    try {
      await task.submit({ corrected: $("text").value });
    } catch (error) {
      $("submit").disabled = false;
      notice("The submission failed: " + error.message, true);
      return;
    }
    $("task").hidden = true;
    notice("Submitted. Thank you!");
  });
})();
