// Runs Debian's JMeter 2.13 (package jmeter 2.13-5) on Debian 12, whose XStream 1.4.20 rejects
// every class that JMeter 2.13 does not allow-list, so `jmeter -n -t plan.jmx` fails with
// "ForbiddenClassException: org.apache.jmeter.save.ScriptWrapper" (JMeter 2.13 predates XStream's
// security framework; JMeter >= 3.3 allow-lists its own classes).
//
// This launcher lets JMeter's two XStream instances (SaveService.JMXSAVER / JTLSAVER) accept
// any type, then hands over to JMeter's own launcher, NewDriver. Only for trusted plans: the
// point of XStream's allow-list is untrusted XML.
//
//   javac -cp /usr/share/jmeter/bin/ApacheJMeter.jar -d . OpenXStreamJMeter.java
//   java -cp .:/usr/share/jmeter/bin/ApacheJMeter.jar -Djmeter.home=/usr/share/jmeter \
//        OpenXStreamJMeter -n -t plan.jmx ...
import java.lang.reflect.Field;
import java.lang.reflect.Method;

public class OpenXStreamJMeter {
    public static void main(String[] args) throws Exception {
        String home = System.getProperty("jmeter.home", "/usr/share/jmeter");
        Class<?> driver = Class.forName("org.apache.jmeter.NewDriver");  // builds JMeter's loader
        Field loaderField = driver.getDeclaredField("loader");
        loaderField.setAccessible(true);
        ClassLoader loader = (ClassLoader) loaderField.get(null);
        Thread.currentThread().setContextClassLoader(loader);

        // SaveService reads JMeter's properties when it is initialised: load them first,
        // including the -q files of the command line, so that nothing initialised here misses them.
        Class<?> utils = Class.forName("org.apache.jmeter.util.JMeterUtils", true, loader);
        utils.getMethod("setJMeterHome", String.class).invoke(null, home);
        utils.getMethod("loadJMeterProperties", String.class)
                .invoke(null, home + "/bin/jmeter.properties");
        java.util.Properties props =
                (java.util.Properties) utils.getMethod("getJMeterProperties").invoke(null);
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals("-q")) {
                try (java.io.FileInputStream in = new java.io.FileInputStream(args[i + 1])) {
                    props.load(in);
                }
            }
        }

        Class<?> saveService = Class.forName("org.apache.jmeter.save.SaveService", true, loader);
        Class<?> xstream = Class.forName("com.thoughtworks.xstream.XStream", true, loader);
        Class<?> permission =
                Class.forName("com.thoughtworks.xstream.security.TypePermission", true, loader);
        Object any = Class.forName("com.thoughtworks.xstream.security.AnyTypePermission", true, loader)
                .getField("ANY").get(null);
        Method addPermission = xstream.getMethod("addPermission", permission);
        for (String name : new String[] {"JMXSAVER", "JTLSAVER"}) {
            Field field = saveService.getDeclaredField(name);
            field.setAccessible(true);
            addPermission.invoke(field.get(null), any);
        }
        driver.getMethod("main", String[].class).invoke(null, (Object) args);
    }
}
