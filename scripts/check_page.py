#!/usr/bin/env python3
"""The page that `alexnet serve` serves at /, checked in a real browser: Debian's Chromium,
headless, driven by Selenium through Debian's chromedriver. It picks an image in the page's file
input, waits for the bars, and requires the page's top five to be the ones POST /v1/predict
gives for the same file; then drops the same file on the drop zone and requires them again; the model table and conv1's filters must have loaded. Saves a
screenshot.

    python3 scripts/check_page.py --weights W.safetensors --image IMG [--classes classes.tsv] \
        [--screenshot docs/serve.png] [--binary target/release/alexnet]

Needs: apt-get install chromium chromium-driver; pip install selenium.
"""
import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/alexnet")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--classes")
    ap.add_argument("--screenshot")
    a = ap.parse_args()

    cmd = [a.binary, "serve", "--weights", a.weights, "--addr", "127.0.0.1:0"]
    if a.classes:
        cmd += ["--classes", a.classes]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on http://"):
            sys.exit(f"the server did not start: {line!r}")
        url = line.split()[2]
        with open(a.image, "rb") as f:
            req = urllib.request.Request(url + "v1/predict?top=5", data=f.read(),
                                         headers={"Content-Type": "application/octet-stream"})
        api_top = json.load(urllib.request.urlopen(req))["top"]

        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1320,560"]:
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            driver.get(url)
            wait = WebDriverWait(driver, 30)
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#model tr")) >= 4)
            layers = len(driver.find_elements(By.CSS_SELECTOR, "#layers tr")) - 1
            want_layers = len(json.load(urllib.request.urlopen(url + "v1/model"))["summary"]["layers"])
            driver.find_element(By.ID, "file").send_keys(os.path.abspath(a.image))
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#classes .row .cls")
                       or d.find_element(By.ID, "error").text)
            error = driver.find_element(By.ID, "error").text
            if error:
                sys.exit(f"the page shows an error: {error}")
            names = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#classes .row .cls")]
            pcts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#classes .row .pct")]
            filters_ok = driver.execute_script(
                "const i = document.getElementById('filters'); return i.complete && i.naturalWidth > 0;")
            preview_ok = driver.execute_script(
                "const i = document.getElementById('preview'); return !i.hidden && i.complete && i.naturalWidth > 0;")
            if a.screenshot:
                driver.save_screenshot(a.screenshot)
            # The drop zone: the same image dropped (a DragEvent carrying the file, as a
            # browser dispatches it) must give the same bars again, via the drop handler.
            driver.execute_script("document.getElementById('classes').textContent = '';")
            driver.execute_async_script("""
                const [b64, done] = arguments;
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], "dropped", { type: "" }));
                document.getElementById("drop").dispatchEvent(
                    new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
                done();
            """, base64.b64encode(open(a.image, "rb").read()).decode())
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#classes .row .cls")
                       or d.find_element(By.ID, "error").text)
            dropped = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#classes .row .cls")]
        finally:
            driver.quit()
        want = [c["name"] for c in api_top]
        problems = []
        if names != want:
            problems.append(f"the page lists {names}, POST /v1/predict says {want}")
        if dropped != want:
            problems.append(f"after a drop the page lists {dropped}, POST /v1/predict says {want}")
        if layers != want_layers:
            problems.append(f"the page's layer table has {layers} rows, the model {want_layers} layers")
        if not filters_ok:
            problems.append("conv1's filters did not load")
        if not preview_ok:
            problems.append("the picked image is not shown")
        if problems:
            sys.exit("page check failed: " + "; ".join(problems))
        print(f"page: picked {a.image}; Chromium shows top class {names[0]!r} ({pcts[0]}), as the API says; "
              f"the same after a drop; layer table ({layers} layers), filters and preview shown" + (f"; screenshot {a.screenshot}" if a.screenshot else ""))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            sys.exit("the server was still running 30 s after SIGTERM")
        if code != 0:
            sys.exit(f"the server exited with {code} after SIGTERM")


if __name__ == "__main__":
    main()
