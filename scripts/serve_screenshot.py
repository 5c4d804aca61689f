"""Make docs/serve.png, the README's picture of `cocktail serve`: the page after it separated
one recording with the bundled default model, in Debian's headless chromium.

    python scripts/serve_screenshot.py data/test-real16k/mix/00001_tuxpaint-lt-0000_hedgewars-Singer-0000.wav

Run from the repository root after `make install` (it reuses the browser test's helpers).
"""

import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cocktailparty.serve.app import create_app  # noqa: E402
from tests.test_serve import chromium, running  # noqa: E402


def main(recording: str, out: str = "docs/serve.png") -> None:
    folder = Path(tempfile.mkdtemp())
    upload = folder / "meeting.wav"
    shutil.copy(recording, upload)
    with running(create_app(None, device="cpu")) as base:
        driver = chromium()
        try:
            driver.set_window_size(900, 1300)
            driver.get(base + "/")
            WebDriverWait(driver, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#separate-model option"))
            driver.find_element(By.ID, "separate-file").send_keys(str(upload))
            driver.find_element(By.ID, "separate-go").click()
            WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "results").is_displayed())
            time.sleep(1)  # the spectrograms load
            driver.set_window_size(900, driver.execute_script("return document.body.scrollHeight") + 40)
            time.sleep(0.5)
            png = driver.get_screenshot_as_png()
        finally:
            driver.quit()
    shutil.rmtree(folder)
    # 96 colours keep the spectrograms readable and the file under 200 kB.
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(
        out, optimize=True)
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
