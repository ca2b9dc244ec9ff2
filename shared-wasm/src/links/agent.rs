//! What a click's user agent says: device type, browser, OS, and whether it is a bot.
//!
//! Deliberately a short ordered list of substring rules rather than a full UA database:
//! it runs on every redirect inside the edge's CPU budget, and analytics need families
//! (Chrome, Safari, iOS), not versions. Order matters where agents borrow each other's
//! tokens (Edge and Opera say "Chrome", Chrome says "Safari", iPad may say "Macintosh").

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Ios,
    Android,
    Desktop,
    /// No user agent, or one that is no browser.
    Other,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Ios => "ios",
            Device::Android => "android",
            Device::Desktop => "desktop",
            Device::Other => "other",
        }
    }
}

/// Crawlers, link-preview fetchers and HTTP libraries; lower-case substrings.
const BOT_MARKERS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "facebookexternalhit",
    "facebookcatalog",
    "embedly",
    "quora link preview",
    "whatsapp",
    "telegram",
    "skypeuripreview",
    "vkshare",
    "pinterest",
    "bitlypreview",
    "outbrain",
    "iframely",
    "headlesschrome",
    "phantomjs",
    "lighthouse",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "go-http-client",
    "java/",
    "okhttp",
    "axios/",
    "node-fetch",
    "libwww-perl",
    "httpclient",
    "scrapy",
    "preview",
];

/// Everything a click records about its user agent, read in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agent {
    pub device: Device,
    pub os: &'static str,
    pub browser: &'static str,
    /// Automated: a crawler, a link-preview fetcher or an HTTP library. An empty agent
    /// counts as a bot: browsers always send one.
    pub bot: bool,
}

impl Agent {
    pub fn parse(user_agent: &str) -> Agent {
        let raw = Pairs::of(user_agent.as_bytes());
        let has = |needle: &str| raw.may_contain(needle) && user_agent.contains(needle);
        let os = if has("iPhone") || has("iPad") || has("iPod") {
            "iOS"
        } else if has("Android") {
            "Android"
        } else if has("Windows") {
            "Windows"
        } else if has("CrOS") {
            "ChromeOS"
        } else if has("Mac OS X") || has("Macintosh") {
            "macOS"
        } else if has("Linux") || has("X11") {
            "Linux"
        } else {
            "Other"
        };
        let device = match os {
            "iOS" => Device::Ios,
            "Android" => Device::Android,
            "Windows" | "macOS" | "Linux" | "ChromeOS" => Device::Desktop,
            _ => Device::Other,
        };
        let browser = BROWSERS.iter().find(|(token, _)| has(token)).map_or("Other", |(_, name)| name);
        let bot = user_agent.trim().is_empty() || {
            let lower = user_agent.to_ascii_lowercase();
            let pairs = Pairs::of(lower.as_bytes());
            BOT_MARKERS.iter().any(|marker| pairs.may_contain(marker) && lower.contains(marker))
        };
        Agent { device, os, browser, bot }
    }
}

/// Browser families by their tokens, most specific first.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
];

/// Which byte pairs occur in a text, as a 4,096-bit filter: a needle with a pair the text
/// lacks cannot occur in it, so most of the ~50 rules are ruled out without a substring
/// search (profiling showed those searches as the guest's largest cost per redirect).
struct Pairs([u64; 64]);

impl Pairs {
    fn slot(a: u8, b: u8) -> usize {
        ((usize::from(a) << 5) ^ usize::from(b)) & 4095
    }

    fn of(text: &[u8]) -> Pairs {
        let mut bits = [0u64; 64];
        for pair in text.windows(2) {
            let slot = Self::slot(pair[0], pair[1]);
            bits[slot / 64] |= 1 << (slot % 64);
        }
        Pairs(bits)
    }

    fn may_contain(&self, needle: &str) -> bool {
        needle.as_bytes().windows(2).all(|pair| {
            let slot = Self::slot(pair[0], pair[1]);
            self.0[slot / 64] & (1 << (slot % 64)) != 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const PIXEL: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
    const EDGE_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0";
    const FIREFOX_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0";

    fn family(agent: &str) -> (Device, &'static str, &'static str) {
        let parsed = Agent::parse(agent);
        (parsed.device, parsed.os, parsed.browser)
    }

    fn is_bot(agent: &str) -> bool {
        Agent::parse(agent).bot
    }

    #[test]
    fn families_of_common_agents() {
        assert_eq!(family(IPHONE), (Device::Ios, "iOS", "Safari"));
        assert_eq!(family(PIXEL), (Device::Android, "Android", "Chrome"));
        assert_eq!(family(EDGE_WIN), (Device::Desktop, "Windows", "Edge"));
        assert_eq!(family(FIREFOX_MAC), (Device::Desktop, "macOS", "Firefox"));
        assert_eq!(family(""), (Device::Other, "Other", "Other"));
    }

    #[test]
    fn the_pair_filter_never_hides_a_match() {
        // Every rule is found in a text made of just that rule, at any offset.
        let rules = BOT_MARKERS.iter().chain(BROWSERS.iter().map(|(token, _)| token));
        for rule in rules {
            let text = format!("xx{rule}yy");
            assert!(Pairs::of(text.as_bytes()).may_contain(rule), "{rule}");
        }
        assert!(!Pairs::of(b"Mozilla/5.0").may_contain("bot"));
    }

    #[test]
    fn bots_and_previews_are_flagged_browsers_are_not() {
        for agent in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "WhatsApp/2.23.20.0",
            "curl/8.5.0",
            "",
        ] {
            assert!(is_bot(agent), "{agent}");
        }
        for agent in [IPHONE, PIXEL, EDGE_WIN, FIREFOX_MAC] {
            assert!(!is_bot(agent), "{agent}");
        }
    }
}
